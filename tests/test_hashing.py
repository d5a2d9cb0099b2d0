"""codemix.hashing: the digests are plain sha256 (of bytes, and of a directory's names and file
digests, as stage identities of checkpoint parents have always been computed), and a replaced file
is read again despite the cache."""

import hashlib
import os

from codemix.hashing import content_sha256, file_sha256


def test_file_digest_is_sha256_of_the_bytes_and_follows_a_replaced_file(tmp_path):
    path = tmp_path / "weights.bin"
    payload = os.urandom(3 << 20 | 5)  # several 1 MiB blocks and a tail
    path.write_bytes(payload)
    assert file_sha256(path) == hashlib.sha256(payload).hexdigest()
    stat = path.stat()
    newer = tmp_path / "new.bin"
    newer.write_bytes(bytes(len(payload)))  # same size; renamed over the old file as an atomic save does
    os.utime(newer, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the same mtime
    os.replace(newer, path)
    assert file_sha256(path) == hashlib.sha256(bytes(len(payload))).hexdigest()


def test_content_digest_of_a_directory_and_of_a_file(tmp_path):
    (tmp_path / "ckpt" / "sub").mkdir(parents=True)
    (tmp_path / "ckpt" / "b.json").write_text("{}")
    (tmp_path / "ckpt" / "sub" / "a.bin").write_bytes(b"\x00\x01")
    expected = hashlib.sha256()
    for name, data in (("b.json", b"{}"), ("sub/a.bin", b"\x00\x01")):
        expected.update(f"{name}\0".encode() + hashlib.sha256(data).hexdigest().encode())
    assert content_sha256(tmp_path / "ckpt") == expected.hexdigest()
    single = hashlib.sha256(b"\0" + hashlib.sha256(b"{}").hexdigest().encode()).hexdigest()
    assert content_sha256(tmp_path / "ckpt" / "b.json") == single
    (tmp_path / "ckpt" / "sub" / "a.bin").write_bytes(b"\x00\x02")
    assert content_sha256(tmp_path / "ckpt") != expected.hexdigest()
