"""sources.py and the client holder of passes.py: joining the manifest to REST metadata,
agent-only names, and which source `values.source` picks; no network."""

from __future__ import annotations

from pathlib import Path

import pytest

from secret_agent.coder import Clients, ManifestSecret
from secret_agent.config import load_config
from secret_agent.errors import ConfigError, CredentialsError, ValueSourceError
from secret_agent.model import SecretMeta, SourceKind
from secret_agent.redact import Secret, known_values
from secret_agent.sources import (
    AgentSource,
    Fetched,
    InlineSource,
    check_agent_only,
    join_manifest,
    make_source,
    manifest_secrets,
)

CANARY = "canary-sources-31d7"
AGENT_TOKEN = "3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b"


def entry(env: str = "", path: str = "", value: str = CANARY) -> ManifestSecret:
    return ManifestSecret(env_name=env, file_path=path, value=Secret(value))


def meta(name: str, env: str = "", path: str = "", updated: str = "t1") -> SecretMeta:
    return SecretMeta(name=name, env_name=env, file_path=path, updated_at=updated)


class FakeAgent:
    """Stands in for AgentClient: nothing real can serve a canned manifest without I/O."""

    def __init__(self, manifest: list[ManifestSecret]) -> None:
        self.manifest = tuple(manifest)
        self.calls = 0

    def get_manifest_secrets(self) -> tuple[ManifestSecret, ...]:
        self.calls += 1
        return self.manifest


def test_join_matches_by_env_name_or_file_path_on_raw_strings() -> None:
    """Each secret takes the entry sharing its env_name or its exact file_path string."""
    manifest = [
        entry(env="A", value="va"),
        entry(path="~/b", value="vb"),
        entry(path="/home/u/b", value="vb-abs"),
        entry(env="C", path="~/c", value="vc"),
    ]
    joined = join_manifest(
        [
            meta("a", env="A"),
            meta("b", path="~/b"),
            meta("abs", path="/home/u/b"),
            meta("c", env="C", path="~/c"),
        ],
        manifest,
    )
    assert {k: v.reveal() for k, (_, v) in joined.items()} == {
        "a": "va", "b": "vb", "abs": "vb-abs", "c": "vc",
    }  # fmt: skip


def test_join_leaves_out_secrets_missing_from_the_manifest() -> None:
    """A secret without an entry (deleted or disabled meanwhile) is not returned at all."""
    assert join_manifest([meta("gone", env="GONE")], [entry(env="OTHER")]) == {}


def test_join_takes_the_manifest_targets_when_they_moved() -> None:
    """An entry found by env_name whose file_path changed brings the new path (and version)."""
    listed = meta("a", env="A", path="~/old")
    joined = join_manifest([listed], [entry(env="A", path="~/new")])
    fresh, _ = joined["a"]
    assert (fresh.env_name, fresh.file_path) == ("A", "~/new")
    assert fresh.version != listed.version  # the next list re-fetches and settles it


def test_join_refuses_targets_split_across_two_entries() -> None:
    """env_name pointing at one entry and file_path at another is a torn read: retry."""
    with pytest.raises(ValueSourceError, match="two different secrets"):
        join_manifest([meta("a", env="A", path="~/a")], [entry(env="A"), entry(path="~/a")])


def test_agent_only_names_come_from_env_name_else_file_path() -> None:
    """Names are the env_name, else the file_path; unique, sorted, versioned by targets."""
    desired = manifest_secrets(
        [entry(path="~/.ssh/key"), entry(env="TOKEN", path="~/t"), entry(env="API")]
    )
    assert [(s.name, s.env_name, s.file_path) for s in desired] == [
        ("API", "API", ""),
        ("TOKEN", "TOKEN", "~/t"),
        ("~/.ssh/key", "", "~/.ssh/key"),
    ]
    assert desired[1].version == ("", "TOKEN", "~/t")


@pytest.mark.parametrize(
    ("case", "manifest"),
    [
        ("no-target", [entry()]),
        ("duplicate-env", [entry(env="A"), entry(env="A", path="~/x")]),
    ],
)
def test_agent_only_refuses_a_manifest_that_breaks_uniqueness(
    case: str, manifest: list[ManifestSecret]
) -> None:
    """Entries without targets or with a repeated name are refused, never merged."""
    with pytest.raises(ValueSourceError) as caught:
        manifest_secrets(manifest)
    assert CANARY not in str(caught.value), case


def test_agent_source_makes_no_call_when_nothing_changed() -> None:
    """No stale secret, no GetManifest: the steady state costs zero calls."""
    agent = FakeAgent([entry(env="A")])
    source = AgentSource(lambda: agent)
    assert source.values_for([]) == Fetched()
    assert (agent.calls, source.rpc_calls) == (0, 0)
    source.values_for([meta("a", env="A"), meta("b", env="B")])
    assert (agent.calls, source.rpc_calls) == (1, 1)


def test_agent_source_registers_every_manifest_value_for_scrubbing() -> None:
    """Values of the whole manifest, not only the joined ones, are known to `scrub`."""
    known_values.clear()
    source = AgentSource(
        lambda: FakeAgent(
            [entry(env="A", value=f"{CANARY}-a"), entry(env="B", value=f"{CANARY}-b")]
        )
    )
    source.values_for([meta("a", env="A")])
    assert known_values.scrub(f"x {CANARY}-b y") == "x [redacted] y"


def test_make_source_agent_needs_an_agent_token() -> None:
    """`agent` without CODER_AGENT_TOKEN is a clear error naming the variable."""
    with pytest.raises(ValueSourceError, match="CODER_AGENT_TOKEN"):
        make_source(None, kind=SourceKind.AGENT, agent=None)  # type: ignore[arg-type]


def test_make_source_auto_falls_back_to_the_agent_only_with_a_token() -> None:
    """`auto` tries inline first and keeps the agent as fallback when a token exists."""
    with_agent = make_source(None, kind=SourceKind.AUTO, agent=lambda: FakeAgent([]))  # type: ignore[arg-type]
    without = make_source(None, kind=SourceKind.AUTO, agent=None)  # type: ignore[arg-type]
    inline = make_source(None, kind=SourceKind.INLINE, agent=lambda: FakeAgent([]))  # type: ignore[arg-type]
    assert isinstance(with_agent, InlineSource)
    assert with_agent._fallback is not None
    assert without._fallback is None  # type: ignore[attr-defined]
    assert inline._fallback is None  # type: ignore[attr-defined]


def test_inline_without_session_token_is_refused_in_agent_only_mode() -> None:
    """`inline` needs the REST API, which agent-only mode does not have."""
    with pytest.raises(ValueSourceError, match="no session token"):
        check_agent_only(SourceKind.INLINE)
    check_agent_only(SourceKind.AUTO)
    check_agent_only(SourceKind.AGENT)


# -- the client holder ------------------------------------------------------------


def config_for(tmp_path: Path, **env: str):  # type: ignore[no-untyped-def]
    return load_config(path=None, env={"HOME": str(tmp_path), **env})


def test_holder_needs_a_url_and_a_token(tmp_path: Path) -> None:
    """No token: CredentialsError; agent-only without any URL: ConfigError on coder.url."""
    with pytest.raises(CredentialsError):
        Clients(config_for(tmp_path, CODER_URL="http://c.example"))
    with pytest.raises(ConfigError, match="CODER_AGENT_URL"):
        Clients(config_for(tmp_path, CODER_AGENT_TOKEN=AGENT_TOKEN))


def test_holder_agent_only_uses_the_agent_url_and_makes_no_rest_client(tmp_path: Path) -> None:
    """With only CODER_AGENT_URL and CODER_AGENT_TOKEN, the agent client targets that URL."""
    config = config_for(
        tmp_path, CODER_AGENT_URL="http://agent.example:3000/sub", CODER_AGENT_TOKEN=AGENT_TOKEN
    )
    with Clients(config) as clients:
        assert clients.agent_only
        assert clients.agent().url == "http://agent.example:3000"
        assert clients._rest is None


def test_holder_reuses_clients_whose_settings_did_not_change(tmp_path: Path) -> None:
    """A reload keeps the agent client (and its connection) when only other keys changed."""
    env = {
        "CODER_URL": "http://c.example",
        "CODER_SESSION_TOKEN": "s-1",
        "CODER_AGENT_TOKEN": AGENT_TOKEN,
    }
    first = Clients(config_for(tmp_path, **env))
    rest, agent = first.rest(), first.agent()
    same = first.renewed(first.config)
    assert same is first
    second = first.renewed(config_for(tmp_path, **{**env, "CODER_SESSION_TOKEN": "s-2"}))
    assert second.agent() is agent
    assert second.rest() is not rest
    third = second.renewed(
        config_for(tmp_path, **{**env, "CODER_AGENT_TOKEN": AGENT_TOKEN.upper()})
    )
    assert third.agent() is not agent
    third.close()
