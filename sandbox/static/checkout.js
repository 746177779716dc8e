"use strict";
/* The sandbox's stand-in for Stripe's payment page: shows the invoice's balance and pays it
 * (the server sends the bot a Stripe-signed checkout.session.completed webhook). Text only:
 * nothing from the server becomes markup. */
const token = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
const api = `/sandbox/api/checkout/${encodeURIComponent(token)}`;
const $ = (id) => document.getElementById(id);

async function load() {
  const answer = await fetch(api, {headers: {"accept": "application/json"}});
  const info = await answer.json();
  if (!answer.ok) { $("title").textContent = info.error || "Not found"; return; }
  $("title").textContent = `Invoice ${info.invoice}`;
  $("customer").textContent = info.customer;
  $("amount").textContent = info.amount;
  if (info.paid) { $("message").textContent = "This invoice is paid."; return; }
  $("pay").textContent = `Pay ${info.amount}`;
  $("pay").disabled = false;
}

async function pay() {
  $("pay").disabled = true;
  $("message").textContent = "Paying…";
  const answer = await fetch(`${api}/pay`, {method: "POST",
    headers: {"content-type": "application/json"}, body: "{}"});
  const result = await answer.json();
  if (!answer.ok) { $("message").textContent = result.error || "Failed"; $("pay").disabled = false; return; }
  location.assign(result.done_url);
}

document.addEventListener("DOMContentLoaded", () => {
  $("pay").addEventListener("click", pay);
  load().catch(() => { $("title").textContent = "Could not load the invoice"; });
});
