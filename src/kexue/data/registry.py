"""The data registry: every named data set kexue reads, where it comes from, and the error for a missing one.

:data:`DATASETS` is the one table. Each :class:`DataSet` names a public GitHub repository at a pinned commit; each
:class:`DataFile` gives the file's path in the data folder (:func:`kexue.env.data_dir`), its path in that repository,
its size and SHA-256 as stored (after any unpacking: ``gunzip`` of a ``.gz``, ``unzip`` of a one-member ``.zip``),
so ``kexue data fetch NAME`` can rebuild the folder byte for byte. A file is downloaded from
``{mirror}/{repo}/{commit}/{source}``; the mirror is ``https://raw.githubusercontent.com`` unless the ``mirror``
argument or ``$KEXUE_DATA_MIRROR`` names another server with the same layout.

Repository licences (MIT, Apache-2.0) cover the repositories' code, not the data inside them: most sets are for
research use only (``research_only``), and ``kexue data fetch`` prints their terms before downloading them.
"""

from __future__ import annotations

import os
import re
import shlex
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from .._validate import check_choice
from ..env import data_dir

#: Where files are downloaded from unless overridden: GitHub's raw file server.
DEFAULT_MIRROR = "https://raw.githubusercontent.com"
#: The environment variable naming another server with the layout ``{mirror}/{repo}/{commit}/{path}``.
MIRROR_ENV = "KEXUE_DATA_MIRROR"
#: How a downloaded file becomes the stored one (``None``: stored as downloaded).
Unpack = Literal["gunzip", "unzip"]
UNPACK: tuple[Unpack | None, ...] = (None, *get_args(Unpack))


class MissingData(FileNotFoundError):
    """A named data set (or one of its files) is not in the data folder.

    The message names the set and the exact command that fetches it (``.command``); ``kexue reproduce`` turns this
    error into the status ``not run`` with that message as the reason.
    """

    def __init__(self, name: str, folder: str | Path, detail: str = "") -> None:
        self.name = name
        self.folder = Path(folder)
        self.detail = detail
        self.command = f"kexue data fetch {name}"
        if not _is_default_folder(self.folder):
            self.command = f"KEXUE_DATA={shlex.quote(str(self.folder))} {self.command}"
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"data set {name!r} is not in {self.folder}{extra}: fetch it with `{self.command}` "
            f"(or set KEXUE_DATA to a folder that has it)"
        )

    def __reduce__(self) -> tuple[Any, ...]:  # keep the constructor's arguments through pickling (multiprocessing)
        return (type(self), (self.name, str(self.folder), self.detail))


def require_data(*parts: str) -> Path:
    """Path of a file or folder inside :func:`data_dir`; ``parts[0]`` is the data set's name (its folder).

    Raises :class:`MissingData` (a ``FileNotFoundError``) naming the set, the missing path and
    the command that fetches it.
    """
    if not parts:
        raise ValueError("expected the data set's name (its folder) and optionally a path inside it, got no parts")
    root = data_dir()
    path = root.joinpath(*parts)
    if not path.exists():
        raise MissingData(parts[0], root, f"no {path}")
    return path


def _is_default_folder(folder: Path) -> bool:
    try:
        return folder.resolve() == data_dir().resolve()
    except OSError:
        return False


class UnknownData(ValueError):
    """A name that is not in the registry; the message lists the known ones."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        super().__init__(f"expected data set names among {', '.join(REGISTRY)}, got {', '.join(names)}")


@dataclass(frozen=True)
class DataFile:
    """One stored file: ``path`` in the data folder, ``source`` in the repository, size and SHA-256 as stored."""

    path: str
    source: str
    size: int
    sha256: str
    unpack: Unpack | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.size, int) and self.size > 0):
            raise ValueError(f"{self.path}: expected size > 0 bytes, got {self.size!r}")
        if not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ValueError(f"{self.path}: expected sha256 to be 64 lowercase hex digits, got {self.sha256!r}")
        check_choice(f"unpack of {self.path}", self.unpack, UNPACK)


@dataclass(frozen=True)
class DataSet:
    """A named set: a folder of the data folder, from one repository at one commit, under one licence."""

    name: str
    repo: str
    commit: str
    licence: str
    research_only: bool
    files: tuple[DataFile, ...]

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[0-9a-f]{40}", self.commit):
            raise ValueError(f"data set {self.name!r}: expected commit to be 40 lowercase hex digits, got "
                             f"{self.commit!r}")
        if not self.files:
            raise ValueError(f"data set {self.name!r}: expected at least one file, got none")
        outside = [f.path for f in self.files if not f.path.startswith(f"{self.name}/")]
        if outside:
            raise ValueError(f"data set {self.name!r}: expected file paths under {self.name}/, got {outside}")

    @property
    def size(self) -> int:
        """Bytes of all files as stored."""
        return sum(f.size for f in self.files)

    @property
    def terms(self) -> str:
        """One line printed before a download: the licence, and for research-only sets what that means."""
        if self.research_only:
            return (f"{self.name}: {self.licence}. Research use only: by fetching it you accept these terms; "
                    f"keep it out of anything you distribute.")
        return f"{self.name}: {self.licence}."

    def url(self, f: DataFile, mirror: str | None = None) -> str:
        """Download URL of ``f``: ``{mirror}/{repo}/{commit}/{source}`` (see :func:`resolve_mirror`)."""
        return f"{resolve_mirror(mirror)}/{self.repo}/{self.commit}/{f.source}"

    def missing(self, folder: str | Path) -> list[DataFile]:
        """Files of the set absent from ``folder`` or of the wrong size (checksums are not read)."""
        root = Path(folder)
        out = []
        for f in self.files:
            p = root / f.path
            if not (p.is_file() and p.stat().st_size == f.size):
                out.append(f)
        return out


#: URL schemes a mirror may use (those ``urllib.request.urlopen`` opens); all but ``file`` need a host.
MIRROR_SCHEMES = ("http", "https", "ftp", "file")


def resolve_mirror(mirror: str | None = None) -> str:
    """The base URL: ``mirror`` if given, else ``$KEXUE_DATA_MIRROR``, else :data:`DEFAULT_MIRROR`.

    Raises ``ValueError`` naming the argument (or the variable) for a value that is not a URL of
    :data:`MIRROR_SCHEMES` with a host (``file:///folder`` needs none), before anything is downloaded.
    """
    if mirror is not None and not isinstance(mirror, str):
        raise TypeError(f"expected mirror to be a URL (str), got {mirror!r} ({type(mirror).__name__})")
    name, base = ("mirror", mirror) if mirror else (f"${MIRROR_ENV}", os.environ.get(MIRROR_ENV) or "")
    if not base:
        return DEFAULT_MIRROR
    parts = urllib.parse.urlsplit(base)
    if parts.scheme not in MIRROR_SCHEMES or not (parts.netloc or (parts.scheme == "file" and parts.path)):
        raise ValueError(f"expected {name} to be a URL like https://HOST/PATH or file:///FOLDER (schemes "
                         f"{', '.join(MIRROR_SCHEMES)}), got {base!r}")
    return base.rstrip("/")


def _as_path(name: str, value: object) -> Path:
    """``Path(value)`` for a ``str`` or ``os.PathLike``, else ``TypeError`` naming the argument ``name``."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"expected {name} to be a path (str or os.PathLike), got {value!r} ({type(value).__name__})")
    return Path(value)


def get(name: str) -> DataSet:
    """The registered set ``name``; :class:`UnknownData` (listing the known names) otherwise."""
    if name not in REGISTRY:
        raise UnknownData([name])
    return REGISTRY[name]


#: (path in the set's folder, size, sha256, source in the repository or None for root + path, unpack)
_Row = tuple[str, int, str, str | None, Unpack | None]


def _f(path: str, size: int, sha256: str, source: str | None = None, unpack: Unpack | None = None) -> _Row:
    return (path, size, sha256, source, unpack)


def _set(name: str, repo: str, commit: str, root: str, licence: str, research_only: bool,
         rows: list[_Row]) -> DataSet:
    """A set whose files sit at ``root + path`` in the repository unless a row names its own source."""
    files = tuple(DataFile(f"{name}/{path}", source if source is not None else root + path, size, sha, unpack)
                  for path, size, sha, source, unpack in rows)
    return DataSet(name, repo, commit, licence, research_only, files)


_ALPS = "3c7ef2c98249fc975a897b27f275695f97d5b7a9"
_UER = "5743050cc41f0f21986c9f938db5ac1726052629"
_LIC2020 = "LIC2020 participant agreement: non-commercial research or teaching only"

#: The table: every named data set kexue reads (the folders of the data folder).
DATASETS: tuple[DataSet, ...] = (
    _set("sst2", "forest-snow/alps", _ALPS, "data/SST-2/",
         "SST (Socher et al., 2013): no explicit licence, redistributed for research (repository MIT)", True, [
        _f("dev.tsv", 383214, "92353770071a2a889f75d000a38a9e541ea8f0a5499e50f040b17917a5cbf66f"),
        _f("test.tsv", 94931, "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0"),
        _f("train.tsv", 3422882, "920e317b2c52e12cd22db1da2c6708312bd7dc4f3712b9bbf1b50ee6c2c792ba"),
    ]),
    _set("agnews", "forest-snow/alps", _ALPS, "data/agnews/",
         "AG's corpus (Zhang et al., 2015): non-commercial research use", True, [
        _f("dev.tsv", 2030410, "7a0811e0006080bf4de17752c5466450ff3db778be71bc5bcf3c4e99b5f0803d"),
        _f("test.tsv", 1530104, "e4217edd939f618f24a42b0988c56ec3cddf656d8dc279b9afa443dd1ab6a1c1"),
    ]),
    _set("goemotions", "monologg/GoEmotions-pytorch", "b75f9d3a8b76bc1060687925b04ca98a1b8ea66b", "data/original/",
         "Apache-2.0 (Google, Demszky et al., 2020); Reddit comments with names masked", False, [
        _f("dev.tsv", 439059, "575489c079c9de1097062a01738f998590d6b7ead66dd1c9fd1d2ba01fd8bc62"),
        _f("labels.txt", 248, "45c3ef86782d2a4d7fedcd6d8c111aa0d0e94720689bd164fac94fefb4495a89"),
        _f("test.tsv", 436706, "0587b2dd8b27b97352adbfc3fb083d46005c8946657fdc2b1ca8b1cc7f1f8be4"),
        _f("train.tsv", 3519053, "1c254a142be5c00e80d819b9ae1bbd36d94b2eeb8f4b1271846508d57e57d9c5"),
    ]),
    _set("chnsenticorp", "dbiir/UER-py", _UER, "datasets/chnsenticorp/",
         "ChnSentiCorp (Tan Songbo): research use", True, [
        _f("dev.tsv", 374230, "d129e443eac08ce7643013dad496a8edf282be39cac1a4f2ad080818b296b331"),
        _f("test.tsv", 369742, "34f9d71eba6096cd8689e18913d28cf9a5f3c18a6c2804cd13304a321738c4bc"),
        _f("train.tsv", 3019974, "0b2653c23e5c79f539472e90cb10522f0ada4b80d3da95572d8b48fda47d5b33"),
    ]),
    # labels.json is the "virus" folder's file (the same six labels as "usual"), byte for byte the stored one.
    _set("smp2020_ewect", "dbiir/UER-py", _UER, "datasets/smp2020-ewect/usual/",
         "SMP2020-EWECT evaluation data: research use", True, [
        _f("dev.tsv", 252400, "e6da8d033b7da031b4daf2339ce9fc4391741d4b3cb12883f38cd78a4a7723d6"),
        _f("labels.json", 229, "ddda38d592db39863ca94d23536ff7c83fb7db45a63c19bb6aaa24bb3241eef5",
           "datasets/smp2020-ewect/virus/labels.json"),
        _f("test.tsv", 636992, "154ac29c733b4448defa07f8601473f199d6cc1fc55f9317b64cb0d75f55cd77"),
        _f("train.tsv", 3544827, "6c086ef4f16a0db11ac987fd64e5e80ceaedfa6990758d0ead061d1d51aea0e6"),
    ]),
    _set("fewclue", "CLUEbenchmark/FewCLUE", "62a02c6f31cf32814cfe522f78ef088228840f8d", "datasets/",
         "FewCLUE: no licence stated (README: being added); research use", True, [
        _f("eprstmt/dev_few_all.json", 31099, "859eeb8b977a5e06c13b7c4016a74aae1dc8a5ff5a8fb502fba77e551087ed96"),
        _f("eprstmt/test_public.json", 114575, "ddea92e833023adeff35070bd56331878ae9fdc57fd99229c249c2aae06bbf41"),
        _f("eprstmt/train_few_all.json", 27836, "da6343ed63264304fdbf70ebc6f82d7ab43aa294daad047f450a88252a36de9d"),
        _f("iflytek/dev_few_all.json", 1193376, "25e8dd5031ce5d1f7f78f00edff81749a2dc00c17894151c2790c55a4ac3f5dc"),
        _f("iflytek/test_public.json", 1537988, "f3cca532ec3d63b4afd2d8ce73f2f6e3eaa224cf8fa2fb9a6ebe2e602742dc19"),
        _f("iflytek/train_few_all.json", 2700173, "8de5db8d8a9fa77ae2e5da36a78c762625303600d547f96cc3b674a012243fe6"),
        _f("tnews/dev_few_all.json", 214448, "8aa37d994fa6148e673c1357a44ee1409cab0220f773b55dd8e5733446804725"),
        _f("tnews/labels.json", 992, "1e87cf4842c5fe528ac9f76ac164bda88b1bb1458c186750af34327353389f4e",
           "datasets/tnews/label_index2en2zh.json"),
        _f("tnews/test_public.json", 385206, "19909c69baee76687f0ffeb73b5eac642e77a32a8fe661325c6f9338ca9e4c99"),
        _f("tnews/train_few_all.json", 230596, "261c91076d36a2e64bad671719cbeccbfce8e7032716de4dbb495bccbb971c15"),
        _f("tnews/unlabeled.json", 3133192, "8b3ecb742f611718fac1a0576cda84211052e94aa07669e2052c89d3bca6e506"),
    ]),
    _set("senteval_cn", "shawroad/CoSENT_Pytorch", "ddb08479cc8d9a472b131cfd4160ddd86f905c22", "data/",
         "ATEC, BQ, LCQMC (research use by agreement), PAWS-X (free use), STS-B(zh): no repository licence", True, [
        _f("ATEC/ATEC.test.data", 1664603, "24c56edf6289a7f337af75553c360ece41a1e17e500cdb563f020ad25ece8319"),
        _f("ATEC/ATEC.valid.data", 1663903, "994b6452cad5c0c1efca215f45f99b0cd26515de12936cc5aa23810b0b55f703"),
        _f("BQ/BQ.test.data", 735362, "9592b13afdfdc034d3d1b883d58807ea21989624d94e321bb802efb08d98c6d1"),
        _f("BQ/BQ.valid.data", 732244, "fe7ccff114f4d9ad75f8468a65437eb52d22e5fb8ca1d56a25340ba4c367442b"),
        _f("LCQMC/LCQMC.test.data", 776457, "8969f9c16050f40df9da6f591443a47bc14c17a504a354ee4cc4ab5b9aa303d9"),
        _f("LCQMC/LCQMC.valid.data", 690285, "d3cd41ed89b8f6196a76ebff2aa03d5ecf42edcd12942aa865d34f7e570af7c2"),
        _f("PAWSX/PAWSX.test.data", 442674, "1e8aa66616c4f50499292aabd4a8c01685056f06ff2e97a977d836968cc50c11"),
        _f("PAWSX/PAWSX.valid.data", 441128, "3a9da4b372d981e607eaf9b4ad4a1db0c0a7040f54535870198bda7f13e07dd2"),
        _f("STS-B/STS-B.test.data", 147342, "a22c0e4dba5d589b8f68feca2c11329031fdaee084c37c30ebea7feea12a3545"),
        _f("STS-B/STS-B.train.data", 597702, "456904474b184025fc620fa62d887bdcd6c0de28bc94888602fc8112b8d0719c"),
        _f("STS-B/STS-B.valid.data", 185717, "5d3297cb522b763970631790508c567a141be4d3b729669ae2a19743383340c6"),
    ]),
    _set("stsb_en", "shibing624/text2vec", "8e90a0f171286ac9a47b5bf492612a3b38c2d3f5", "",
         "STS-B (Cer et al., 2017) from SemEval STS 2012-2017 texts with mixed terms: research use", True, [
        _f("stsbenchmark.tsv", 1395414, "e15fd8684f9b3950051acf11301ee4dda78aee328b33b56e2b5dde6b2d7a1f93",
           "examples/data/English-STS-B/stsbenchmark.tsv.gz", "gunzip"),
    ]),
    _set("sick", "kkalouli/SICK-processing", "0848f4aec60870122a4ca18de08ba0e25f6f9a75", "",
         "CC BY-NC-SA 3.0 (Marelli et al., 2014)", True, [
        _f("SICK.txt", 2432648, "1539c2d059809b5bd40694e26d8121cc85b6b496f91c7b40f2fc83bbd7dcd957"),
    ]),
    _set("conll2003", "kyzhouhzau/BERT-NER", "0f77e478872453df51cd3c65d1a39b12d9617f9d", "old_version/NERdata/",
         "Reuters RCV1 text (c) Reuters, research use under NIST's agreement; not redistributable", True, [
        _f("dev.txt", 827443, "c02eb19809eafb83998326a0481942eb37d96f31826ae387cfe8773699969f5b"),
        _f("test.txt", 748095, "dc4ac7f3d6d01a6bec59261814561da3b287b6b493b97d1f69c580b52ec1831b"),
        _f("train.txt", 3283420, "213953b5522fb7924802d883e50f027b2c6ffb5d4d0e63368ed82909f9b60423"),
    ]),
    _set("phee", "ZhaoyueSun/PHEE", "41489b08675d0b63a1eb7cd4f2d1946952833eb1", "data/json/",
         "repository MIT; sentences from MEDLINE abstracts (publishers' copyright): research use", True, [
        _f("dev.json", 808437, "e1e24c0dfbe6f624e590a26d294f3082d0142ffc28b9da56761f1dd45e96aa53"),
        _f("test.json", 809649, "ca7e24a88f62e8201583e14f206cd4df5c543acc627abd195bea4df8acd9afdf"),
        _f("train.json", 2386113, "a2d6cbdae3d95cb3a7e13439164c002041061f6f9823608af483c82d17a31f2b"),
    ]),
    _set("webnlg", "hy-struggle/PRGC", "8bbaf340472d232f09a0b8004457b712e1ff1a66", "data/",
         "WebNLG texts CC BY-NC-SA 4.0, DBpedia triples CC BY-SA 3.0: non-commercial research", True, [
        _f("WebNLG-star/rel2id.json", 10124, "2dbb31527e177e50210c9ca716eee592411a1ec64c0abe088de8a8760e19bca0"),
        _f("WebNLG-star/test_triples.json", 313409, "cc0b6160fb7f0f51f987ff105105607f1ba3bef3c64f380a81a3e0587d3ead53"),
        _f("WebNLG-star/train_triples.json", 2280602,
           "1e807587524c3aeb2ca3963c7b00e7e822ed21f9491a6dde2ce011c6cee84fe2"),
        _f("WebNLG-star/val_triples.json", 217847, "4426b1720db34a4c66b08d21884225fd1cc5102801f08ad10a5828973afaeb94"),
        _f("WebNLG/rel2id.json", 5397, "b54c957009ef2248527e69a5bd57ea736f6755773a6e8eb97acf8704c1592b96"),
        _f("WebNLG/test_triples.json", 336135, "d343f72899e7d92137499b9675768d68c736d02fa72c295c782ee5eb0361bf1d"),
        _f("WebNLG/train_triples.json", 2342780, "8c3dc0ac35f335753899e270b6b1c410a1305239bf27a2a9af99587c9a3966d5"),
        _f("WebNLG/val_triples.json", 246628, "a79cd7cd424e919cc7d483eccf1a62f7aeab158e74ee3ceb7d8f11aed88a4add"),
    ]),
    _set("squad_v1.1", "pulakdas1999/QnA_using_BERT", "48925669ea5ebb270348b817d7463b809a381bb9", "",
         "CC BY-SA 4.0 (Rajpurkar et al., 2016)", False, [
        _f("dev-v1.1.json", 4854279, "95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9",
           "dev-v1.1.json.zip", "unzip"),
    ]),
    _set("duee", "160610101/NLPCC2021EE", "4805b516f761f0eee0b227e938ba5b0849672cee", "data/",
         _LIC2020, True, [
        _f("duee_dev.json", 929086, "27f8d46dc3c77ebe5c09ca7459bcd57622be5a3e6bf8bd18b2adcccabc46494b"),
        _f("duee_event_schema.json", 12664, "c47cb0f7398c8306dfdcee21bf16f3bb618adb02d5b1f00356df658905c554e3"),
    ]),
    _set("dureader_robust", "pengwei-iie/Dureader_robustness", "0b42eb3c6ad9e5093e1a5b364404f46e85d4b57e",
         "data_2020/dureader_robust-data/", _LIC2020, True, [
        _f("dev.json", 1993619, "eda029d96334a413a5b58d003b318cb84a8a81ce09280de7f9ea82b1c4999006"),
    ]),
)

#: Name -> set.
REGISTRY: dict[str, DataSet] = {d.name: d for d in DATASETS}


def _check_table() -> None:
    """Each name and each file path once (every entry checked itself when it was built: DataFile, DataSet)."""
    counts = Counter([d.name for d in DATASETS] + [f.path for d in DATASETS for f in d.files])
    twice = sorted(n for n, c in counts.items() if c > 1)
    if twice:
        raise ValueError(f"data registry: expected each set name and file path once, got {twice} more than once")


_check_table()


__all__ = ["DATASETS", "DEFAULT_MIRROR", "MIRROR_ENV", "MIRROR_SCHEMES", "REGISTRY", "UNPACK", "DataFile", "DataSet",
           "MissingData", "UnknownData", "Unpack", "get", "require_data", "resolve_mirror"]
