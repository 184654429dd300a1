"""command hash

Revision ID: 0005
Revises: 0004

commands.hash: the first 8 bytes of SHA-256 of the command as published
(hex), what its ack's h must be. An ingestion worker, which did not send
the command, checks the ack against it (alarm ack_mismatch, docs/HEADEND.md
"Ingestion").
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('commands') as b:
        b.add_column(sa.Column('hash', sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table('commands') as b:
        b.drop_column('hash')
