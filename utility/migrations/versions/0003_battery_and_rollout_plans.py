"""battery and rollout_plans

Revision ID: 0003
Revises: 0002c

The tables the reference head-end gained while the platform's first cut was
merged: battery (a battery meter's newest cell record) and rollout_plans
(tools/rollout.py: a rollout's image and rules across head-end restarts).
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002c'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('battery',
        sa.Column('meter', sa.Text(), nullable=False),
        sa.Column('t', sa.BigInteger(), nullable=True),
        sa.Column('mv', sa.BigInteger(), nullable=True),
        sa.Column('pct', sa.BigInteger(), nullable=True),
        sa.Column('days', sa.BigInteger(), nullable=True),
        sa.Column('received', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('meter', name=op.f('pk_battery'))
    )
    op.create_table('rollout_plans',
        sa.Column('version', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('board', sa.Text(), nullable=False),
        sa.Column('region', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('image', sa.LargeBinary(), nullable=True),
        sa.Column('params', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('version', 'board', 'region', name=op.f('pk_rollout_plans'))
    )


def downgrade():
    op.drop_table('rollout_plans')
    op.drop_table('battery')
