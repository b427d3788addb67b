"""The functional core of notifications (notify/rules.py) and the URL masking: no database, no network."""

import pytest

from notify import rules, service


def test_notify_urls_split_on_schemes_and_carry_level_and_topics():
    text = (
        "tgram://123456789:ABCdef/-100123?level=WARNING, json://hooks.example/cdb?topics=alerts,fills,"
        "mailtos://user:pass@mail.example?to=ops@example.com,cto@example.com&level=CRITICAL"
    )
    urls = rules.split_urls(text)
    assert len(urls) == 3
    specs = [rules.parse_destination(url) for url in urls]
    assert [s.level for s in specs] == ["WARNING", "INFO", "CRITICAL"]
    assert [s.topics for s in specs] == [("alerts", "daily"), ("alerts", "fills"), ("alerts", "daily")]
    assert "level" not in specs[0].url and "topics" not in specs[1].url
    assert "to=ops@example.com,cto@example.com" in specs[2].url
    with pytest.raises(ValueError, match="unknown topic"):
        rules.parse_destination("json://h/x?topics=alerts,trades")
    with pytest.raises(ValueError, match="unknown level"):
        rules.parse_destination("json://h/x?level=LOUD")


def test_levels_and_topics_decide_who_gets_what():
    assert rules.admits("WARNING", ("alerts",), "alerts", "CRITICAL")
    assert rules.admits("WARNING", ("alerts",), "alerts", "WARNING")
    assert not rules.admits("WARNING", ("alerts",), "alerts", "INFO")
    assert not rules.admits("INFO", ("fills",), "alerts", "CRITICAL")
    assert rules.admits("CRITICAL", ("fills",), "fills")
    assert not rules.admits("INFO", ("alerts", "daily"), "fills")


def test_secrets_are_what_the_privacy_form_hides():
    described = service.describe("tgram://123456789:ABCdefGhIJKlmnoPQRstu/-100123456?level=CRITICAL")[1]
    assert "ABCdefGhIJKlmnoPQRstu" not in described.masked and "ABCdefGhIJKlmnoPQRstu" in described.secrets
    assert "-100123456" in described.masked  # a chat id is not a secret
    with pytest.raises(ValueError) as error:
        service.describe("nosuchservice://TOPSECRET1234@x")
    assert "TOPSECRET1234" not in str(error.value)


def test_a_digest_lists_every_item_and_takes_the_worst_level():
    items = [("[WARNING] DATA_STALE", f"no data {i}") for i in range(70)] + [("[CRITICAL] RISK_LIMIT", "halt")]
    message = rules.digest_message(items, 60)
    assert message.title == "71 notifications within 60 s (coalesced)" and message.level == "CRITICAL"
    assert message.body.count("\n") == rules.MAX_DIGEST_LINES and "… and 11 more" in message.body


def test_backoff_doubles_up_to_the_cap():
    assert [rules.retry_delay(n, 2, 60) for n in range(7)] == [2, 4, 8, 16, 32, 60, 60]
