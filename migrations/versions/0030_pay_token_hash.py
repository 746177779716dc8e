"""pay token hash: "Pay now" links keep only a hash of their token

`payment_links.token` held the token of `/pay/<token>` in clear: anyone reading the database (a
backup, a replica, a BI tool) could open any customer's payment page. The column becomes
`token_hash`, the SHA-256 (hex) of the token, hashed in place: a link is looked up by the hash
of the token a click brings, so every URL already e-mailed keeps working. A new nullable
column `legacy_token_hash` (unique) receives that hash when the link is next shown: new URLs
carry a token derived from a server secret (`workflows.payment_links.token_for`), and the
first URL keeps opening the link.

Going down renames the column back but cannot give the tokens back: links look up by the
clear token there, so every link's URL stops working (a new one is made when it is shown).

Revision ID: 0030_pay_token_hash
Revises: 0029_reversed_settlements
Create Date: 2026-12-07
"""
import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0030_pay_token_hash"
down_revision: str | None = "0029_reversed_settlements"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "payment_links"
INDEX = "ix_payment_links_legacy_token_hash"
BATCH = 1000


def upgrade() -> None:
    conn = op.get_bind()
    links = sa.table(TABLE, sa.column("id", sa.Integer), sa.column("token", sa.String))
    last = 0
    while rows := conn.execute(sa.select(links.c.id, links.c.token).where(links.c.id > last)
                               .order_by(links.c.id).limit(BATCH)).all():
        for link_id, token in rows:
            conn.execute(sa.update(links).where(links.c.id == link_id).values(
                token=hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()))
        last = rows[-1][0]
    # (both databases rename a column in place; constraints and indexes follow it)
    op.execute(f"ALTER TABLE {TABLE} RENAME COLUMN token TO token_hash")
    op.add_column(TABLE, sa.Column("legacy_token_hash", sqlmodel.sql.sqltypes.AutoString(
        length=64), nullable=True))
    op.create_index(INDEX, TABLE, ["legacy_token_hash"], unique=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name=TABLE)
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_column("legacy_token_hash")
    op.execute(f"ALTER TABLE {TABLE} RENAME COLUMN token_hash TO token")
