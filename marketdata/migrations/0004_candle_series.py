"""CandleSeries and the triggers that keep it (see CandleSeries): the strategy cache's O(1) check of a history."""

from django.db import migrations, models

POSTGRESQL = [
    """
    CREATE FUNCTION cdb_candle_series_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO marketdata_candleseries ("symbol", "interval", "newest", "revision")
            SELECT DISTINCT "symbol", "interval", NULL::bigint, 0 FROM inserted
            ON CONFLICT ("symbol", "interval") DO NOTHING;
        -- In one order, so two writers of several series cannot deadlock; after the insert (see CandleSeries).
        PERFORM 1 FROM marketdata_candleseries s
            WHERE (s."symbol", s."interval") IN (SELECT "symbol", "interval" FROM inserted)
            ORDER BY s."symbol", s."interval" FOR UPDATE;
        UPDATE marketdata_candleseries s
            SET "revision" = s."revision" + CASE WHEN s."newest" IS NOT NULL AND i.lo <= s."newest" THEN 1 ELSE 0 END,
                "newest" = GREATEST(s."newest", i.hi)
            FROM (SELECT "symbol", "interval", MIN("timestamp") AS lo, MAX("timestamp") AS hi
                  FROM inserted GROUP BY "symbol", "interval") i
            WHERE s."symbol" = i."symbol" AND s."interval" = i."interval";
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER cdb_candle_series_inserted AFTER INSERT ON marketdata_candle
        REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION cdb_candle_series_inserted()
    """,
    """
    CREATE FUNCTION cdb_candle_series_rewritten() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE marketdata_candleseries SET "revision" = "revision" + 1;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER cdb_candle_series_rewritten AFTER UPDATE OR DELETE OR TRUNCATE ON marketdata_candle
        FOR EACH STATEMENT EXECUTE FUNCTION cdb_candle_series_rewritten()
    """,
]
POSTGRESQL_REVERSE = [
    "DROP TRIGGER IF EXISTS cdb_candle_series_inserted ON marketdata_candle",
    "DROP TRIGGER IF EXISTS cdb_candle_series_rewritten ON marketdata_candle",
    "DROP FUNCTION IF EXISTS cdb_candle_series_inserted()",
    "DROP FUNCTION IF EXISTS cdb_candle_series_rewritten()",
]
SQLITE = [  # one writer at a time: no lock needed; rows one by one (SQLite has no statement triggers)
    """
    CREATE TRIGGER cdb_candle_series_inserted AFTER INSERT ON marketdata_candle FOR EACH ROW BEGIN
        INSERT OR IGNORE INTO marketdata_candleseries ("symbol", "interval", "newest", "revision")
            VALUES (NEW."symbol", NEW."interval", NULL, 0);
        UPDATE marketdata_candleseries
            SET "revision" = "revision" + ("newest" IS NOT NULL AND NEW."timestamp" <= "newest"),
                "newest" = MAX(COALESCE("newest", NEW."timestamp"), NEW."timestamp")
            WHERE "symbol" = NEW."symbol" AND "interval" = NEW."interval";
    END
    """,
    """
    CREATE TRIGGER cdb_candle_series_updated AFTER UPDATE ON marketdata_candle BEGIN
        UPDATE marketdata_candleseries SET "revision" = "revision" + 1;
    END
    """,
    """
    CREATE TRIGGER cdb_candle_series_deleted AFTER DELETE ON marketdata_candle BEGIN
        UPDATE marketdata_candleseries SET "revision" = "revision" + 1;
    END
    """,
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS cdb_candle_series_inserted",
    "DROP TRIGGER IF EXISTS cdb_candle_series_updated",
    "DROP TRIGGER IF EXISTS cdb_candle_series_deleted",
]
EXISTING = """
    INSERT INTO marketdata_candleseries ("symbol", "interval", "newest", "revision")
    SELECT "symbol", "interval", MAX("timestamp"), 0 FROM marketdata_candle GROUP BY "symbol", "interval"
"""


def _run(statements: dict[str, list[str]]):
    def run(apps, schema_editor):
        vendor = schema_editor.connection.vendor
        if vendor not in statements:
            raise NotImplementedError(f"CandleSeries triggers for {vendor}")
        for sql in statements[vendor]:
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("marketdata", "0003_candle_symbol_ts"),
    ]

    operations = [
        migrations.CreateModel(
            name="CandleSeries",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("symbol", models.CharField(max_length=41)),
                ("interval", models.CharField(max_length=8)),
                ("newest", models.BigIntegerField(help_text="timestamp of the newest stored candle", null=True)),
                ("revision", models.BigIntegerField(default=0)),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("symbol", "interval"), name="candleseries_unique")],
            },
        ),
        migrations.RunPython(
            _run({"postgresql": [*POSTGRESQL, EXISTING], "sqlite": [*SQLITE, EXISTING]}),
            _run({"postgresql": POSTGRESQL_REVERSE, "sqlite": SQLITE_REVERSE}),
        ),
    ]
