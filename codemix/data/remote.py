"""A built corpus in object storage (s3://, gs://, ... any remote mosaicml-streaming reads).

`fetch_corpus` copies the small files (corpus.json, tokenizer.json, manifests, shard indexes, and the
validation shards, which evaluation reads whole) into a local cache folder that then opens as a
Corpus; the training shards stay remote and streaming downloads them into the same folder as the
loader reaches them (Stream(remote=..., local=...)). `stream_cache` bounds that folder (streaming
evicts the least recently used shards past the limit) and sets how far ahead the loader downloads.
The S3 client takes its endpoint from S3_ENDPOINT_URL and its credentials from the usual AWS variables."""

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from codemix.errors import ConfigError

if TYPE_CHECKING:
    from codemix.data.corpus import Corpus

REMOTE_SCHEMES = ("s3://", "gs://", "oci://", "azure://", "dbfs:/", "hf://")
# The package each scheme's streaming client imports, for the error when it is not installed.
CLIENT_PACKAGES = {"s3": "boto3", "gs": "google-cloud-storage", "oci": "oci", "azure": "azure-storage-blob",
                   "dbfs": "databricks-sdk", "hf": "huggingface_hub"}
REMOTE_FILE = "remote.json"  # in the cache folder: the corpus's remote url
DOWNLOAD_TIMEOUT_S = 60.0
# Without a cache_limit, a remote corpus's training shards may fill this share of the cache disk's free
# space; one that fits is cached whole (nothing evicted, as a local corpus reads).
CACHE_SHARE_OF_FREE_DISK = 0.5
# streaming refuses a cache smaller than this many times its largest shard (one in use, others arriving).
SHARDS_IN_CACHE = 4


def is_remote(location: str) -> bool:
    return str(location).startswith(REMOTE_SCHEMES)


def cache_folder(url: str, corpora: Path) -> Path:
    """The local cache of the corpus at `url`: one folder per url under <home>/corpora/.remote."""
    name = url.rstrip("/").rsplit("/", 1)[-1]
    return corpora / ".remote" / f"{name}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def fetch_corpus(url: str, cache: Path) -> Path:
    """Copy the corpus's metadata and validation shards from `url` into `cache`; returns `cache`."""
    from codemix._streaming import streaming  # noqa: F401  (streaming's vision-free import first)
    from streaming.base.storage.download import CloudDownloader

    from codemix.data.corpus import CORPUS_FILE, MANIFEST_FILE, TOKENIZER_FILE

    url = url.rstrip("/")
    try:
        downloader = CloudDownloader.get(url)  # one client for every file (a client costs ~0.3 s to make)
    except ValueError as err:
        raise ConfigError(f"{url}: {err}") from err
    except ModuleNotFoundError as err:  # the client is imported on first use
        package = CLIENT_PACKAGES.get(url.split(":", 1)[0], err.name)
        raise ConfigError(f"{url}: reading it needs the {package} package, not installed here "
                          f"(pip install {package} beside codemix)") from err

    def get(relative: str) -> Path:
        local = cache / relative
        try:
            downloader.download(f"{url}/{relative}", str(local), DOWNLOAD_TIMEOUT_S)
        except Exception as err:  # the clients raise their own types (botocore, google, ...)
            raise ConfigError(f"{url}/{relative}: cannot download: {str(err).splitlines()[0]}") from err
        return local

    try:
        meta = json.loads(get(CORPUS_FILE).read_text())
        get(TOKENIZER_FILE)
        for source in meta["sources"]:
            get(f"{source['name']}/{MANIFEST_FILE}")
            get(f"{source['name']}/train/index.json")
            get(f"{source['name']}/val/index.json")
            for shard in read_index(cache / source["name"] / "val"):
                get(f"{source['name']}/val/{shard['raw_data']['basename']}")
    finally:
        downloader.clean_up()
    (cache / REMOTE_FILE).write_text(json.dumps({"remote": url}))
    return cache


@dataclass(frozen=True)
class StreamCache:
    """streaming's settings for a corpus's training streams."""

    cache_limit: int | None = None  # bytes of the local cache; None: nothing is evicted
    predownload: int | None = None  # samples each loader worker downloads ahead; None: streaming's 8 x batch


def stream_cache(corpus: "Corpus", sources: list[str], cache_limit: str | int | None, predownload: int | None,
                 origin: str) -> StreamCache:
    """The cache settings for training on `sources` of `corpus`, checked before any download. A local
    corpus has no cache (a limit would make streaming delete its shards): both stay streaming's."""
    if predownload is not None and predownload < 1:
        raise ConfigError(f"{origin}: data.predownload {predownload}: must be at least 1 sample")
    if corpus.remote is None:
        return StreamCache()
    shards = [shard["raw_data"]["bytes"] + (shard.get("zip_data") or {}).get("bytes", 0)
              for name in sources for shard in read_index(corpus.path / name / "train")]
    indexes = sum((corpus.path / name / "train" / "index.json").stat().st_size for name in sources)
    largest = max(shards, default=0)
    if cache_limit is None:
        room = int(CACHE_SHARE_OF_FREE_DISK * shutil.disk_usage(corpus.path).free)
        limit = None if indexes + sum(shards) <= room else room
        where = f"{CACHE_SHARE_OF_FREE_DISK:.0%} of the free disk at {corpus.path}"
    else:
        limit = _bytes(cache_limit, origin)
        where = f"data.cache_limit {cache_limit!r}"
    if limit is not None and limit < indexes + SHARDS_IN_CACHE * largest:
        raise ConfigError(f"{origin}: {where} ({limit:,} bytes) cannot cache {SHARDS_IN_CACHE} of the largest "
                          f"training shard ({largest:,} bytes) of {corpus.remote} beside its indexes "
                          f"({indexes:,} bytes)")
    return StreamCache(cache_limit=limit, predownload=predownload)


def read_index(split_dir: Path) -> list[dict]:
    return json.loads((split_dir / "index.json").read_text())["shards"]


def _bytes(value: str | int, origin: str) -> int:
    from streaming.base.util import bytes_to_int

    try:
        size = bytes_to_int(value)
    except ValueError:
        size = 0
    if size < 1:
        raise ConfigError(f"{origin}: data.cache_limit {value!r}: not a size (bytes, or e.g. '50gb', '512mb')")
    return size
