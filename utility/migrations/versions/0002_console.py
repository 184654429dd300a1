"""console: buildings, audit results, scheduled tariff states

Revision ID: 0002c
Revises: 0001

meters.building: the building a meter is in (regions and buildings page;
set at provisioning). audit.result: what an action came to. scheduled_tariffs
.status (pending, publishing, published, refused, failed, cancelled) and
.result (the publish's outcome), docs/HEADEND.md §Console.
"""
import sqlalchemy as sa
from alembic import op

revision = '0002c'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('meters') as b:
        b.add_column(sa.Column('building', sa.Text(), nullable=True))
    with op.batch_alter_table('audit') as b:
        b.add_column(sa.Column('result', sa.Text(), nullable=True))
    with op.batch_alter_table('scheduled_tariffs') as b:
        b.add_column(sa.Column('status', sa.Text(), server_default='pending', nullable=False))
        b.add_column(sa.Column('result', sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table('scheduled_tariffs') as b:
        b.drop_column('result')
        b.drop_column('status')
    with op.batch_alter_table('audit') as b:
        b.drop_column('result')
    with op.batch_alter_table('meters') as b:
        b.drop_column('building')
