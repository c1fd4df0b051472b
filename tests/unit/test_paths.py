"""paths: `~/` expansion, lexical cleaning and the allowed_roots check, as tables."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from secret_agent.errors import UnsafePathError
from secret_agent.paths import (
    MAX_PATH_BYTES,
    check_within_roots,
    components,
    expand_target,
    is_within,
)

HOME = "/home/u"
ROOTS = (HOME,)

ACCEPTED = [
    pytest.param("~/x", "/home/u/x", id="tilde-slash"),
    pytest.param("~/.config/gh/hosts.yml", "/home/u/.config/gh/hosts.yml", id="tilde-nested"),
    pytest.param("/abs", "/abs", id="absolute"),
    pytest.param("/etc/../home/u/x", "/home/u/x", id="absolute-dotdot"),
    pytest.param("~//a///b", "/home/u/a/b", id="duplicate-slashes"),
    pytest.param("~/./a/./b", "/home/u/a/b", id="dot-components"),
    pytest.param("~/../etc/passwd", "/home/etc/passwd", id="tilde-dotdot-escapes"),
    pytest.param("~/a/../../b", "/home/b", id="dotdot-climbs-out"),
    pytest.param("/../../x", "/x", id="dotdot-above-root-stays"),
    pytest.param("~/a/..b", "/home/u/a/..b", id="dotdot-prefixed-name"),
]


@pytest.mark.parametrize(("given_path", "expected"), ACCEPTED)
def test_expand_target_cleans(given_path: str, expected: str) -> None:
    """Accepted paths come back absolute, with `~/`, `.`, `..` and `//` resolved."""
    assert expand_target(given_path, home=HOME) == expected


REFUSED = [
    pytest.param("relative/x", "relative", id="relative"),
    pytest.param("x", "relative", id="bare-name"),
    pytest.param("~user/x", "~user", id="tilde-user"),
    pytest.param("~", "~user", id="tilde-alone"),
    pytest.param("", "empty", id="empty"),
    pytest.param("~/a\x00b", "NUL", id="nul"),
    pytest.param("/" + "a" * (MAX_PATH_BYTES), "longer than 4096", id="4097-bytes"),
    pytest.param("/" + "a" * 256, "name longer than 255", id="long-name"),
    pytest.param("~/dir/", "ends with '/'", id="trailing-slash"),
    pytest.param("~/", "ends with '/'", id="tilde-slash-only"),
    pytest.param("/", "ends with '/'", id="root"),
    pytest.param("~/a/..", "ends with '.' or '..'", id="trailing-dotdot"),
    pytest.param("~/a/.", "ends with '.' or '..'", id="trailing-dot"),
    pytest.param("/a/\udc80\ud800", "cannot be encoded", id="lone-surrogate"),
]


@pytest.mark.parametrize(("given_path", "rule"), REFUSED)
def test_expand_target_refuses(given_path: str, rule: str) -> None:
    """Malformed paths are refused with an UnsafePathError naming the rule they broke."""
    with pytest.raises(UnsafePathError, match=rule) as info:
        expand_target(given_path, home=HOME)
    assert info.value.symlink is False
    assert "\x00" not in str(info.value)


def test_expand_target_4096_bytes_is_the_limit() -> None:
    """A path of exactly MAX_PATH_BYTES bytes is accepted; one more byte is not."""
    name = "/".join(["a" * 200] * 30)
    path = ("/" + name)[:MAX_PATH_BYTES]
    assert len(path.encode()) == MAX_PATH_BYTES
    assert expand_target(path, home=HOME) == path


def test_expand_target_counts_bytes_not_characters() -> None:
    """The length limit is in bytes of UTF-8, so 2049 two-byte characters are too long."""
    path = "/" + "/".join(["é" * 100] * 21)
    assert len(path) < MAX_PATH_BYTES < len(path.encode())
    with pytest.raises(UnsafePathError, match="longer than 4096"):
        expand_target(path, home=HOME)


def test_expand_target_refuses_relative_home() -> None:
    """`~/` against a relative home is refused rather than made relative to the cwd."""
    with pytest.raises(UnsafePathError, match="home must be an absolute path"):
        expand_target("~/x", home="home/u")


def test_absolute_path_ignores_home() -> None:
    """An absolute path does not look at home at all (even an unusable one)."""
    assert expand_target("/etc/x", home="") == "/etc/x"


WITHIN = [
    pytest.param("/home/u/x", "/home/u", True, id="child"),
    pytest.param("/home/u", "/home/u", True, id="same"),
    pytest.param("/home/u2/x", "/home/u", False, id="sibling-prefix"),
    pytest.param("/home/u/../v/x", "/home/u", False, id="dotdot-out"),
    pytest.param("/home/u/x", "/home/u/", True, id="root-trailing-slash"),
    pytest.param("/anything", "/", True, id="slash-root"),
    pytest.param("home/u/x", "/home/u", False, id="relative-path"),
    pytest.param("/home/u/x", "home/u", False, id="relative-root"),
]


@pytest.mark.parametrize(("path", "root", "inside"), WITHIN)
def test_is_within(path: str, root: str, inside: bool) -> None:
    """is_within compares whole components after lexical cleaning."""
    assert is_within(path, root) is inside


CHECKED = [
    pytest.param("~/x", ROOTS, HOME, id="inside-home"),
    pytest.param("~/a/b/c", ("/home/u", "/home/u/a"), HOME, id="outermost-root-wins"),
    pytest.param("/srv/s/x", ("/home/u", "/srv/s"), "/srv/s", id="second-root"),
]


@pytest.mark.parametrize(("given_path", "roots", "root"), CHECKED)
def test_check_within_roots_returns_root(
    given_path: str, roots: tuple[str, ...], root: str
) -> None:
    """A path inside the roots yields the outermost root containing it."""
    assert check_within_roots(expand_target(given_path, home=HOME), roots) == root


OUTSIDE = [
    pytest.param("~/../etc/passwd", ROOTS, id="tilde-dotdot-escape"),
    pytest.param("~/a/../../b", ROOTS, id="dotdot-climbs-out"),
    pytest.param("/etc/passwd", ROOTS, id="absolute-outside"),
    pytest.param("/home/u2/x", ROOTS, id="sibling-prefix"),
    pytest.param("~/x", (), id="no-roots"),
    pytest.param("/home/u", ("/home/u/x",), id="above-root"),
]


@pytest.mark.parametrize(("given_path", "roots"), OUTSIDE)
def test_check_within_roots_refuses(given_path: str, roots: tuple[str, ...]) -> None:
    """A path outside every root is refused with 'outside allowed_roots'."""
    path = given_path if given_path.startswith("/") else expand_target(given_path, home=HOME)
    with pytest.raises(UnsafePathError, match="outside allowed_roots"):
        check_within_roots(path, roots)


def test_root_itself_is_not_a_target() -> None:
    """A file cannot replace a root directory, so the root itself is outside."""
    with pytest.raises(UnsafePathError, match="outside allowed_roots"):
        check_within_roots("/home/u", ("/home/u",))


def test_components_resolves_lexically() -> None:
    """components drops `.` and empty names and resolves `..`, never above `/`."""
    assert components("/a/./b//c/../d") == ("a", "b", "d")
    assert components("/..") == ()
    assert components("a/b") == ()


NAMES = st.sampled_from(["a", "b", "..", ".", "", "~", "x y", "u2", "...", "é"])
PREFIXES = st.sampled_from(["~/", "/", "/home/u/", "/home/", "", "~u/", "~", "/home/u2/"])


@given(
    prefix=PREFIXES,
    names=st.lists(NAMES, max_size=8),
    trailing=st.sampled_from(["", "/"]),
)
@example(prefix="~/", names=["..", "..", "etc", "passwd"], trailing="")
@example(prefix="/home/u/", names=["..", "u2", "x"], trailing="")
def test_any_path_lies_under_the_root_or_is_refused(
    prefix: str, names: list[str], trailing: str
) -> None:
    """Whatever the path, expansion plus the root check either refuses it or yields a
    clean absolute path strictly below the root, equal to what the kernel would reach
    if no directory were a symlink."""
    raw = prefix + "/".join(names) + trailing
    try:
        path = expand_target(raw, home=HOME)
        root = check_within_roots(path, ROOTS)
    except UnsafePathError:
        return
    assert root == HOME
    assert path.startswith(HOME + "/")
    assert path == posixpath.normpath(path)
    assert "/../" not in path + "/"
    assert "/./" not in path + "/"
    expanded = HOME + raw[1:] if raw.startswith("~/") else raw
    # normpath keeps a leading "//" (POSIX leaves it implementation-defined); Linux does not.
    assert path == "/" + posixpath.normpath(expanded).lstrip("/")


@given(st.text(max_size=60))
def test_arbitrary_text_is_cleaned_or_refused(raw: str) -> None:
    """Arbitrary text never raises anything but UnsafePathError, and what passes is
    below the root."""
    try:
        path = expand_target(raw, home=HOME)
        check_within_roots(path, ROOTS)
    except UnsafePathError:
        return
    assert is_within(path, HOME)
    assert path != HOME
