"""OAuth install in the stand-in (mixed into :class:`sandbox.webapi.SlackWebAPI`).

What Slack does between "Add to Slack" and the app's redirect URL: :meth:`OAuthMixin.authorize`
is the installer clicking *Allow* on slack.com's authorize page (a one-time ``code`` for that
installer, workspace and org); ``oauth.v2.access`` exchanges the code — with the app's client
id and secret, as HTTP Basic auth or form fields — for a bot token, and, with token rotation,
refreshes a token (``grant_type=refresh_token``). Every token issued is accepted by the other
methods until it is revoked (:meth:`OAuthMixin.revoke`, what uninstalling does at Slack), and
``auth.test`` answers for the token it is called with.
"""

from __future__ import annotations

import secrets
from typing import Any

from sandbox.methods import err


class OAuthMixin:
    """Installs, tokens and their rotation; state lives under the workspace lock."""

    def enable_oauth(self, client_id: str, client_secret: str, *,
                     expires_in: int | None = None) -> None:
        """Accept installs of the app ``client_id``; ``expires_in`` (seconds) turns token
        rotation on: tokens expire and come with a refresh token."""
        with self._lock:
            self._oauth_clients[client_id] = client_secret
            self._token_ttl = expires_in

    def _reset_oauth(self) -> None:
        self._oauth_clients: dict[str, str] = {}
        self._token_ttl: int | None = None
        self._codes: dict[str, dict] = {}
        self._refresh_tokens: dict[str, dict] = {}
        self._tokens: dict[str, dict] = {}  # issued bot tokens -> their install

    def authorize(self, user_id: str, *, team_id: str | None = None,
                  enterprise_id: str | None = None, enterprise_install: bool = False,
                  scopes: str = "chat:write,commands") -> str:
        """The installer allows the app: a one-time code for the redirect URL."""
        code = "code-" + secrets.token_hex(8)
        with self._lock:
            self._codes[code] = {
                "user_id": user_id, "enterprise_id": enterprise_id,
                "team_id": None if enterprise_install else (team_id or self.team_id),
                "enterprise_install": enterprise_install, "scopes": scopes}
        return code

    def revoke(self, *, team_id: str | None = None, enterprise_id: str | None = None) -> int:
        """Revoke every token of a workspace or org (uninstalling at Slack); returns how many."""
        with self._lock:
            gone = [t for t, i in self._tokens.items() if not i["revoked"] and (
                (team_id and i["team_id"] == team_id)
                or (enterprise_id and i["enterprise_id"] == enterprise_id))]
            for token in gone:
                self._tokens[token]["revoked"] = True
            return len(gone)

    def revoke_token(self, token: Any) -> dict:
        """``auth.revoke`` with an issued token: it is no longer accepted. (Called under the
        workspace lock, by the method dispatcher.)"""
        info = self._tokens.get(token) if isinstance(token, str) else None
        if info is None:
            return err("invalid_auth")
        info["revoked"] = True
        return {"ok": True, "revoked": True}

    def issued_tokens(self) -> dict[str, dict]:
        with self._lock:
            return {t: dict(i) for t, i in self._tokens.items()}

    def token_valid(self, token: Any) -> bool:
        info = self._tokens.get(token) if isinstance(token, str) else None
        return info is not None and not info["revoked"]

    def m_oauth_v2_access(self, p: dict) -> dict:
        client_id, secret = p.get("client_id"), p.get("client_secret")
        if not client_id or self._oauth_clients.get(client_id) != secret:
            return err("invalid_client_id" if client_id not in self._oauth_clients
                       else "bad_client_secret")
        if p.get("grant_type") == "refresh_token":
            grant = self._refresh_tokens.pop(p.get("refresh_token") or "", None)
            if grant is None:
                return err("invalid_refresh_token")
            return self._grant(grant)
        grant = self._codes.pop(p.get("code") or "", None)
        if grant is None:
            return err("invalid_code")
        return self._grant(grant)

    def _grant(self, grant: dict) -> dict:
        token = f"xoxb-{grant['team_id'] or grant['enterprise_id']}-{secrets.token_hex(6)}"
        if self._token_ttl is not None:
            token = "xoxe." + token
        self._tokens[token] = {**grant, "revoked": False}
        answer: dict[str, Any] = {
            "ok": True, "app_id": self.app_id, "token_type": "bot", "access_token": token,
            "scope": grant["scopes"], "bot_user_id": self.bot_user_id,
            "authed_user": {"id": grant["user_id"]},
            "team": {"id": grant["team_id"], "name": "O2C Sandbox"} if grant["team_id"]
            else None,
            "enterprise": ({"id": grant["enterprise_id"], "name": "Grid"}
                           if grant["enterprise_id"] else None),
            "is_enterprise_install": grant["enterprise_install"]}
        if self._token_ttl is not None:
            refresh = "xoxe-1-" + secrets.token_hex(8)
            self._refresh_tokens[refresh] = grant
            answer.update(refresh_token=refresh, expires_in=self._token_ttl)
        return answer

    def auth_test_for(self, token: Any) -> dict:
        info = self._tokens.get(token) if isinstance(token, str) else None
        answer = self.m_auth_test({})
        if info is not None:
            answer.update(team_id=info["team_id"], enterprise_id=info["enterprise_id"],
                          is_enterprise_install=info["enterprise_install"])
        return answer
