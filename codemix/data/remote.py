"""A built corpus in object storage (s3://, gs://, ... any remote mosaicml-streaming reads).

`fetch_corpus` copies the small files (corpus.json, tokenizer.json, manifests, shard indexes, and the
validation shards, which evaluation reads whole) into a local cache folder that then opens as a
Corpus; the training shards stay remote and streaming downloads them into the same folder as the
loader reaches them (Stream(remote=..., local=...)). The S3 client takes its endpoint from
S3_ENDPOINT_URL and its credentials from the usual AWS variables."""

import hashlib
import json
from pathlib import Path

from codemix.errors import ConfigError

REMOTE_SCHEMES = ("s3://", "gs://", "oci://", "azure://", "dbfs:/", "hf://")
REMOTE_FILE = "remote.json"  # in the cache folder: the corpus's remote url
DOWNLOAD_TIMEOUT_S = 60.0


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

    def get(relative: str) -> Path:
        local = cache / relative
        try:
            CloudDownloader.direct_download(f"{url}/{relative}", str(local), DOWNLOAD_TIMEOUT_S)
        except Exception as err:  # the clients raise their own types (botocore, google, ...)
            raise ConfigError(f"{url}/{relative}: cannot download: {str(err).splitlines()[0]}") from err
        return local

    meta = json.loads(get(CORPUS_FILE).read_text())
    get(TOKENIZER_FILE)
    for source in meta["sources"]:
        get(f"{source['name']}/{MANIFEST_FILE}")
        get(f"{source['name']}/train/index.json")
        val_index = json.loads(get(f"{source['name']}/val/index.json").read_text())
        for shard in val_index["shards"]:
            get(f"{source['name']}/val/{shard['raw_data']['basename']}")
    (cache / REMOTE_FILE).write_text(json.dumps({"remote": url}))
    return cache
