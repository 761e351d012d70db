"""Storage passwords are never shown: spaces, quotes, '@', ':', '/' and %-escapes, in the
user-info and in the query, hidden in every message (the command line's stderr and stdout,
tracebacks) and in everything written. PostgreSQL end to end: test_postgres.py."""

from __future__ import annotations

import pytest

from mlpsearch.masking import mask, mask_url, register

# (URL, the secret pieces that must never appear once the URL is registered)
URLS = [
    ("postgresql+psycopg2://u2:Tw0 wordsX@host/db", ["Tw0 wordsX", "Tw0", "wordsX"]),
    ("postgresql+psycopg2://u:ab'cdX@host/db", ["ab'cdX", "cdX"]),
    ('postgresql+psycopg2://u:q"uoteX@host/db', ['q"uoteX', "uoteX"]),
    ("postgresql+psycopg2://u:p@ss:w/rdX@host:5432/db", ["p@ss:w/rdX", "ss:w/rdX", "w/rdX"]),
    ("postgresql+psycopg2://u:pct%40s%2FX@host/db", ["pct%40s%2FX", "pct@s/X", "s%2FX"]),
    ("postgresql+psycopg2://u%3Aa:h%3Ar:pX@host/db", ["h%3Ar:pX", "h:r:pX", "r:pX"]),
    ("postgresql+psycopg2://u@host/db?password=ab'cdX", ["ab'cdX", "cdX"]),
    ("postgresql+psycopg2://u@host/db?password=Tw0 wordsX", ["Tw0 wordsX", "wordsX"]),
    ("postgresql+psycopg2://u@host/db?sslmode=disable&password=p@ss:w/rdX", ["p@ss:w/rdX"]),
    ("postgresql+psycopg2://u@host/db?PASSWORD=s3cr%20etX&x=1", ["s3cr%20etX", "s3cr etX"]),
    ("mysql+pymysql://root:Tw0 wordsX@h/x?charset=utf8&passwd=other0X", ["wordsX", "other0X"]),
]


@pytest.mark.parametrize("url, secrets", URLS, ids=[u for u, _ in URLS])
def test_registered_password_is_hidden_in_every_form(url, secrets):
    register(url)
    shown = mask_url(url)
    texts = [
        shown,
        mask(f"cannot open {url}: refused"),
        mask(f"resume with: mlpsearch run e.toml --storage {url} --jobs 2"),
        mask(repr(url)),  # a traceback shows reprs: quotes escaped
        mask(f'{{"storage": {url!r}}}'),
    ]
    for text in texts:
        for secret in secrets:
            assert secret not in text, text
    assert "***" in shown
    assert shown.startswith(url.split(":", 1)[0])  # the rest of the URL is still there


@pytest.mark.parametrize(
    "text, shown",
    [
        ("postgresql://h/db?user=u&password=ab'cd", "postgresql://h/db?user=u&password=***"),
        ("postgresql://u:s3cret@h/db", "postgresql://u:***@h/db"),
        ("sqlite:///a:b@c.db", "sqlite:///a:b@c.db"),
        ("journal:results/x/journal.log", "journal:results/x/journal.log"),
    ],
)
def test_unregistered_urls_are_masked_by_pattern(text, shown):
    assert mask(text) == shown


CLI_CASES = [("run", i) for i in range(9)] + [("report", 0), ("report", 3), ("worker", 6)]


@pytest.mark.slow
@pytest.mark.parametrize("command, i", CLI_CASES, ids=[f"{c}-{i}" for c, i in CLI_CASES])
def test_command_line_never_shows_the_password(tmp_path, cli, command, i):
    """A refused connection (port 1): one line naming the storage, no password."""
    url, secrets = URLS[i]
    url = url.replace("@host/", "@127.0.0.1:1/").replace("@host:5432/", "@127.0.0.1:1/")
    args = {
        "run": ["run", "digits_random", "--n-trials", "1", "--storage", url],
        "report": ["report", "--storage", url, "--study", "x"],
        "worker": ["worker", "--storage", url, "--study", "x"],
    }[command]
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert "127.0.0.1" in r.stderr
    for secret in secrets:
        assert secret not in r.stdout + r.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    for path in written:
        for secret in secrets:
            assert secret.encode() not in path.read_bytes(), path
