"""console indexes

Revision ID: 0004
Revises: 0003

Indexes for the console's fleet-wide queries (docs/HEADEND.md §1.4):
consumption of every meter over a period reads telemetry by time (meter and
ml in the index, so the rows themselves are not read), and the silent
meters are those with the oldest last_seen.
"""
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(op.f('ix_telemetry_t_meter_ml'), 'telemetry', ['t', 'meter', 'ml'])
    op.create_index(op.f('ix_meters_last_seen'), 'meters', ['last_seen'])


def downgrade():
    op.drop_index(op.f('ix_meters_last_seen'), table_name='meters')
    op.drop_index(op.f('ix_telemetry_t_meter_ml'), table_name='telemetry')
