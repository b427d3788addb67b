"""AccountVersion and the triggers that bump it (see AccountVersion): the market watch's O(1) check that nothing
the account view reads has changed, without a hash over the rows."""

from django.db import migrations, models

VERSION_TABLE = "risk_accountversion"
# table -> the columns whose change is a change of the account (None: every column)
WATCHED = {
    "execution_portfolio": None,
    "execution_position": None,
    "execution_order": ("status", "symbol", "side", "quantity", "requested_price", "event_time"),
    "execution_trade": ("status", "symbol", "quantity", "stop_loss", "entry_time"),
    "risk_tradingstate": None,
    "risk_riskparameters": None,
}
PG_START = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint"
SQLITE_START = "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"


def _postgresql() -> list[str]:
    statements = [
        f"""
        CREATE FUNCTION cdb_account_version_bump() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE {VERSION_TABLE} SET "version" = "version" + 1 WHERE "id" = 1;
            IF NOT FOUND THEN
                INSERT INTO {VERSION_TABLE} ("id", "version") VALUES (1, {PG_START}) ON CONFLICT ("id") DO NOTHING;
            END IF;
            RETURN NULL;
        END $$
        """
    ]
    for table, columns in WATCHED.items():
        statements.append(
            f"CREATE TRIGGER cdb_account_version AFTER INSERT OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION cdb_account_version_bump()"
        )
        changed = "" if columns is None else f"WHEN ({_row('OLD', columns)} IS DISTINCT FROM {_row('NEW', columns)}) "
        statements.append(
            f"CREATE TRIGGER cdb_account_version_updated AFTER UPDATE ON {table} "
            f"FOR EACH ROW {changed}EXECUTE FUNCTION cdb_account_version_bump()"
        )
    return [*statements, f'INSERT INTO {VERSION_TABLE} ("id", "version") VALUES (1, {PG_START})']


def _row(which: str, columns: tuple[str, ...]) -> str:
    return "(" + ", ".join(f'{which}."{column}"' for column in columns) + ")"


def _postgresql_reverse() -> list[str]:
    statements = []
    for table in WATCHED:
        statements.append(f"DROP TRIGGER IF EXISTS cdb_account_version ON {table}")
        statements.append(f"DROP TRIGGER IF EXISTS cdb_account_version_updated ON {table}")
    return [*statements, "DROP FUNCTION IF EXISTS cdb_account_version_bump()"]


# No INSERT OR IGNORE: the conflict clause of the statement that fires the trigger (a position's upsert) would
# override it.
SQLITE_BUMP = f"""
    INSERT INTO {VERSION_TABLE} ("id", "version")
        SELECT 1, {SQLITE_START} WHERE NOT EXISTS (SELECT 1 FROM {VERSION_TABLE} WHERE "id" = 1);
    UPDATE {VERSION_TABLE} SET "version" = "version" + 1 WHERE "id" = 1;
"""


def _sqlite() -> list[str]:
    statements = []
    for table, columns in WATCHED.items():
        for event in ("INSERT", "DELETE"):
            statements.append(
                f"CREATE TRIGGER cdb_account_version_{table}_{event.lower()} AFTER {event} ON {table} "
                f"FOR EACH ROW BEGIN {SQLITE_BUMP} END"
            )
        changed = "" if columns is None else "WHEN " + " OR ".join(f'OLD."{c}" IS NOT NEW."{c}"' for c in columns)
        statements.append(
            f"CREATE TRIGGER cdb_account_version_{table}_update AFTER UPDATE ON {table} "
            f"FOR EACH ROW {changed} BEGIN {SQLITE_BUMP} END"
        )
    return [*statements, f'INSERT INTO {VERSION_TABLE} ("id", "version") VALUES (1, {SQLITE_START})']


def _sqlite_reverse() -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS cdb_account_version_{table}_{event}"
        for table in WATCHED
        for event in ("insert", "delete", "update")
    ]


def _run(statements):
    def run(apps, schema_editor):
        vendor = schema_editor.connection.vendor
        if vendor not in statements:
            raise NotImplementedError(f"AccountVersion triggers for {vendor}")
        for sql in statements[vendor]():
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("risk", "0005_admin_names"),
        ("execution", "0010_admin_names"),
    ]

    operations = [
        migrations.CreateModel(
            name="AccountVersion",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("version", models.BigIntegerField()),
            ],
            options={"verbose_name": "account version", "verbose_name_plural": "account version"},
        ),
        migrations.RunPython(
            _run({"postgresql": _postgresql, "sqlite": _sqlite}),
            _run({"postgresql": _postgresql_reverse, "sqlite": _sqlite_reverse}),
        ),
    ]
