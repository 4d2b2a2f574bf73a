"""The fast GGUF header scan: what it accepts, what it reports, and every way it refuses a file."""
from __future__ import annotations

import os
import random
import struct
from pathlib import Path

import gguf
import pytest
from gguf import GGMLQuantizationType as QType
from gguf import GGUFValueType

from core.gguf_check import InvalidGGUF, SkippedValue, scan_gguf_header
from scripts.gguf_files import (
    TensorSpec,
    html_page_bytes,
    lfs_pointer_bytes,
    overwrite_bytes,
    random_gguf,
    sha256_file,
    truncate_file,
    write_gguf,
    write_unloadable_gguf,
)

MIXED_TENSORS = [
    TensorSpec("token_embd.weight", (8, 512), QType.Q4_K),
    TensorSpec("blk.0.attn_q.weight", (4, 64), QType.Q8_0),
    TensorSpec("blk.0.ffn.weight", (3, 5, 7), QType.F16),
    TensorSpec("blk.0.experts.weight", (2, 2, 2, 32), QType.Q4_0),
    TensorSpec("output_norm.weight", (64,), QType.F32),
    TensorSpec("scalar", (), QType.F32),
]
METADATA = {
    "tokenizer.ggml.tokens": ["<s>", "</s>", "hello", "", "wörld" * 20],
    "tokenizer.ggml.token_type": [1, 2, 3, 4, 5],
    "tokenizer.ggml.scores": [0.5, -1.0],
    "general.tags": ["a"],
    "llama.rope.freq_base": 10000.0,
    "tokenizer.ggml.add_bos_token": True,
    "general.big": 1 << 40,
    "general.negative": -7,
    "general.u8": (GGUFValueType.UINT8, 200),
    "general.f64": (GGUFValueType.FLOAT64, 0.125),
    "general.description": "a model\nwith lines",
}
SHAPES = {
    "default": {},
    "one_byte": {"tensor_bytes": 1, "n_tensors": 1},
    "many_tensors": {"tensor_bytes": 100_000, "n_tensors": 50},
    "alignment_64": {"tensor_bytes": 5000, "n_tensors": 3, "alignment": 64},
    "alignment_1": {"tensor_bytes": 333, "n_tensors": 3, "alignment": 1},
    "mixed_types": {"tensors": MIXED_TENSORS, "metadata": METADATA},
    "no_tensors": {"tensors": []},
}


@pytest.fixture
def small_gguf(tmp_path) -> Path:
    return write_gguf(tmp_path / "small.gguf", tensors=MIXED_TENSORS, metadata=METADATA)


def _reject(path: Path, *expected: str) -> str:
    with pytest.raises(InvalidGGUF) as info:
        scan_gguf_header(path)
    message = str(info.value)
    for text in expected:
        assert text in message
    return message


def _write_bytes(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(data)
    return path


def _find(path: Path, needle: bytes) -> int:
    offset = path.read_bytes().find(needle)
    assert offset >= 0
    return offset


def _after_tensor_name(path: Path, name: str) -> int:
    """Offset of a tensor info's n_dims field (right after its name)."""
    return _find(path, struct.pack("<Q", len(name)) + name.encode()) + 8 + len(name)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_scan_accepts_files_from_the_writer(tmp_path, shape):
    path = write_gguf(tmp_path / "m.gguf", architecture="qwen2", **shape)

    header = scan_gguf_header(path)

    assert header.version == 3
    assert header.architecture == "qwen2"
    assert header.file_size == os.path.getsize(path)
    if header.tensor_count:
        assert header.data_end == header.file_size
    assert header.data_offset % header.alignment == 0
    assert header.alignment == shape.get("alignment", 32)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_scan_agrees_with_gguf_reader(tmp_path, shape):
    path = write_gguf(tmp_path / "m.gguf", **shape)

    header = scan_gguf_header(path, list_tensors=True)
    reader = gguf.GGUFReader(path)

    assert header.tensor_count == len(reader.tensors)
    assert header.kv_count == len(reader.fields) - 3  # the reader adds version and both counts
    assert list(header.metadata) == list(reader.fields)[3:]
    assert header.parameter_count == sum(int(t.n_elements) for t in reader.tensors)
    if reader.tensors:
        assert header.data_offset == reader.data_offset
        assert header.data_end == max(t.data_offset + t.n_bytes for t in reader.tensors)
    for ours, theirs in zip(header.tensors, reader.tensors, strict=True):
        assert ours.name == theirs.name
        assert ours.ggml_type == theirs.tensor_type
        assert ours.shape == tuple(int(d) for d in theirs.shape)
        assert header.data_offset + ours.offset == theirs.data_offset
        assert ours.nbytes == theirs.n_bytes


def test_scan_reports_scalars_and_skips_arrays_by_length(small_gguf):
    header = scan_gguf_header(small_gguf)

    meta = header.metadata
    assert meta["tokenizer.ggml.tokens"] == SkippedValue("ARRAY[STRING]", 5)
    assert meta["tokenizer.ggml.token_type"] == SkippedValue("ARRAY[INT32]", 5)
    assert meta["tokenizer.ggml.scores"] == SkippedValue("ARRAY[FLOAT32]", 2)
    assert meta["llama.rope.freq_base"] == 10000.0
    assert meta["tokenizer.ggml.add_bos_token"] is True
    assert meta["general.big"] == 1 << 40
    assert meta["general.negative"] == -7
    assert meta["general.u8"] == 200
    assert meta["general.f64"] == 0.125
    assert meta["general.description"] == "a model\nwith lines"
    assert header.context_length == 2048
    assert header.tensor_count == len(MIXED_TENSORS)
    assert header.tensors == ()  # only listed when asked


def test_scan_counts_parameters_as_the_elements_of_every_tensor(small_gguf, tmp_path):
    assert scan_gguf_header(small_gguf).parameter_count == 8 * 512 + 4 * 64 + 3 * 5 * 7 + 2 * 2 * 2 * 32 + 64 + 1
    assert scan_gguf_header(write_gguf(tmp_path / "empty.gguf", tensors=[])).parameter_count == 0


@pytest.mark.parametrize("file_type, expected", [
    ((GGUFValueType.UINT32, 15), "Q4_K_M"), ((GGUFValueType.UINT32, 0), "F32"), ((GGUFValueType.UINT32, 1), "F16"),
    ((GGUFValueType.UINT32, 30), "IQ4_XS"), ((GGUFValueType.UINT32, 1024 | 7), "Q8_0"),  # GUESSED flag
    ((GGUFValueType.UINT32, 999), None), ("Q4_K_M", None), (None, None),
])
def test_scan_names_the_quantization_from_general_file_type(tmp_path, file_type, expected):
    metadata = {} if file_type is None else {"general.file_type": file_type}

    header = scan_gguf_header(write_gguf(tmp_path / "m.gguf", metadata=metadata))

    assert header.quantization == expected


def test_scan_walks_a_large_string_array_across_buffer_refills(tmp_path):
    tokens = [f"token-{i}-" + "x" * (i % 300) for i in range(20_000)] + ["y" * 3_000_000]  # ~3 MB + 3 MB
    path = write_gguf(tmp_path / "m.gguf", metadata={"tokenizer.ggml.tokens": tokens, "after": 5})

    header = scan_gguf_header(path)

    assert header.metadata["tokenizer.ggml.tokens"] == SkippedValue("ARRAY[STRING]", len(tokens))
    assert header.metadata["after"] == 5
    assert header.data_end == header.file_size


def test_scan_skips_an_overlong_string_value(tmp_path):
    path = write_gguf(tmp_path / "m.gguf", metadata={"tokenizer.chat_template": "z" * 2_000_000, "after": 1})

    header = scan_gguf_header(path)

    assert header.metadata["tokenizer.chat_template"] == SkippedValue("STRING", 2_000_000)
    assert header.metadata["after"] == 1


def test_scan_accepts_version_2(small_gguf):
    overwrite_bytes(small_gguf, 4, struct.pack("<I", 2))

    assert scan_gguf_header(small_gguf).version == 2


def test_scan_accepts_the_unloadable_fake(tmp_path):
    header = scan_gguf_header(write_unloadable_gguf(tmp_path / "u.gguf"))

    assert header.architecture == "madeuparch"
    assert header.metadata["tokenizer.ggml.tokens"].count > 0
    assert header.data_end == header.file_size


def test_random_gguf_has_exact_size_and_content_from_its_seed(tmp_path):
    first = random_gguf(tmp_path / "a.gguf", 100_000, seed=1)
    again = random_gguf(tmp_path / "b.gguf", 100_000, seed=1)
    other = random_gguf(tmp_path / "c.gguf", 100_000, seed=2)

    assert os.path.getsize(first) == 100_000
    assert sha256_file(first) == sha256_file(again) != sha256_file(other)
    assert scan_gguf_header(other).data_end == 100_000


def test_write_gguf_makes_large_files_without_holding_them(tmp_path):
    path = write_gguf(tmp_path / "big.gguf", tensor_bytes=256 << 20, n_tensors=4)

    header = scan_gguf_header(path)

    assert header.file_size == header.data_end > 256 << 20


@pytest.mark.parametrize(("data", "expected"), [
    (b"", "empty"),
    (html_page_bytes(), "looks like an HTML page"),
    (b"\n\n  <html><body>Bad gateway</body></html>", "looks like an HTML page"),
    (lfs_pointer_bytes("ab" * 32, 253113024), "looks like a Git LFS pointer file"),
    (b'{"error": "Repository not found"}', "looks like a JSON document"),
    (b"GGU", "shorter than a GGUF header"),
    (b"PK\x03\x04" + bytes(100), "bad magic"),
])
def test_scan_names_what_a_non_gguf_file_looks_like(tmp_path, data, expected):
    _reject(_write_bytes(tmp_path, data), expected)


@pytest.mark.parametrize(("version", "expected"), [
    (struct.pack("<I", 1), "version 1"),
    (struct.pack("<I", 99), "version 99"),
    (struct.pack("<I", 0), "version 0"),
    (struct.pack(">I", 3), "big-endian"),
])
def test_scan_rejects_unsupported_versions(small_gguf, version, expected):
    overwrite_bytes(small_gguf, 4, version)

    _reject(small_gguf, expected)


def test_scan_rejects_every_cut_of_the_file(small_gguf):
    data = small_gguf.read_bytes()
    header_end = scan_gguf_header(small_gguf).data_offset
    for size in [*range(header_end + 8), len(data) - 1]:
        small_gguf.write_bytes(data[:size])
        with pytest.raises(InvalidGGUF):
            scan_gguf_header(small_gguf)


def test_scan_rejects_tensor_data_cut_by_one_byte(tmp_path):
    path = random_gguf(tmp_path / "m.gguf", 50_000, seed=3)
    truncate_file(path, -1)

    _reject(path, "truncated tensor data", "1 missing")


@pytest.mark.parametrize(("offset", "expected"), [(8, "absurd tensor count"), (16, "absurd metadata count")])
@pytest.mark.parametrize("count", [1 << 40, (1 << 64) - 1, 10_000])
def test_scan_rejects_absurd_counts(small_gguf, offset, expected, count):
    overwrite_bytes(small_gguf, offset, struct.pack("<Q", count))

    _reject(small_gguf, expected)


def test_scan_rejects_a_key_length_past_the_end(small_gguf):
    overwrite_bytes(small_gguf, 24, struct.pack("<Q", 1 << 62))

    _reject(small_gguf, "key of metadata entry 0", "past the end of the file")


def test_scan_rejects_an_absurdly_long_key(tmp_path):
    path = write_gguf(tmp_path / "m.gguf", metadata={"k" * 70_000: 1})

    _reject(path, "absurd key length of 70000 bytes")


def test_scan_rejects_a_string_value_past_the_end(small_gguf):
    key = b"general.description"
    overwrite_bytes(small_gguf, _find(small_gguf, key) + len(key) + 4, struct.pack("<Q", 1_000_000))

    _reject(small_gguf, "value of 'general.description'", "past the end of the file")


def test_scan_rejects_a_string_array_past_the_end(small_gguf):
    key = b"tokenizer.ggml.tokens"
    overwrite_bytes(small_gguf, _find(small_gguf, key) + len(key) + 8, struct.pack("<Q", 1 << 33))

    _reject(small_gguf, "tokenizer.ggml.tokens", "past the end of the file")


def test_scan_rejects_a_string_inside_an_array_past_the_end(small_gguf):
    key = b"tokenizer.ggml.tokens"
    first_item = _find(small_gguf, key) + len(key) + 4 + 4 + 8
    overwrite_bytes(small_gguf, first_item, struct.pack("<Q", 1 << 40))

    _reject(small_gguf, "tokenizer.ggml.tokens", "past the end of the file")


def test_scan_rejects_a_number_array_past_the_end(small_gguf):
    key = b"tokenizer.ggml.token_type"
    overwrite_bytes(small_gguf, _find(small_gguf, key) + len(key) + 8, struct.pack("<Q", 1 << 50))

    _reject(small_gguf, "array 'tokenizer.ggml.token_type'", "past the end of the file")


@pytest.mark.parametrize("key", [b"general.negative", b"tokenizer.ggml.scores"])
def test_scan_rejects_an_unknown_value_type(small_gguf, key):
    type_offset = _find(small_gguf, key) + len(key)
    if key == b"tokenizer.ggml.scores":  # the item type of the array
        type_offset += 4
    overwrite_bytes(small_gguf, type_offset, struct.pack("<I", 13))

    _reject(small_gguf, key.decode(), "unknown", "type 13")


def test_scan_rejects_arrays_of_arrays(tmp_path):
    path = write_gguf(tmp_path / "m.gguf", metadata={"nested": (GGUFValueType.ARRAY, [[1, 2], [3]])})

    _reject(path, "'nested' holds arrays")


def test_scan_rejects_a_duplicate_key(tmp_path):
    path = write_gguf(tmp_path / "m.gguf", metadata={"dup.a": 1, "dup.b": 2})
    overwrite_bytes(path, _find(path, b"dup.b"), b"dup.a")

    _reject(path, "duplicate metadata key 'dup.a'")


@pytest.mark.parametrize(("value", "expected"), [
    ((GGUFValueType.UINT32, 48), "not a power of two"),
    ((GGUFValueType.UINT32, 0), "not a power of two"),
    ((GGUFValueType.UINT64, 32), "must be a UINT32"),
])
def test_scan_rejects_a_bad_alignment(tmp_path, value, expected):
    path = write_gguf(tmp_path / "m.gguf", metadata={"general.alignment": value})

    _reject(path, expected)


def test_scan_rejects_a_duplicate_tensor_name(tmp_path):
    path = write_gguf(tmp_path / "m.gguf", n_tensors=3)
    overwrite_bytes(path, _find(path, b"blk.1.weight"), b"blk.0.weight")

    _reject(path, "duplicate tensor name 'blk.0.weight'")


def test_scan_rejects_an_overlong_tensor_name(tmp_path):
    path = write_gguf(tmp_path / "m.gguf", tensors=[TensorSpec("n" * 64, (32,))])

    _reject(path, "name of 64 bytes")


@pytest.mark.parametrize(("field_offset", "value", "expected"), [
    (0, struct.pack("<I", 9), "9 dimensions"),
    (4, struct.pack("<Q", 1 << 63), "absurd dimensions"),
    (4, struct.pack("<Q", 100), "not whole Q4_K blocks"),
    (4 + 16, struct.pack("<I", 4), "unknown type 4"),
    (4 + 16, struct.pack("<I", 1000), "unknown type 1000"),
    (4 + 16 + 4, struct.pack("<Q", 1 << 50), "past the end of the file"),
    (4 + 16 + 4, struct.pack("<Q", 32), "not 0"),
])
def test_scan_rejects_a_bad_tensor_info(small_gguf, field_offset, value, expected):
    overwrite_bytes(small_gguf, _after_tensor_name(small_gguf, "token_embd.weight") + field_offset, value)

    _reject(small_gguf, "token_embd.weight", expected)


def test_scan_rejects_overlapping_tensor_data(small_gguf):
    second = _after_tensor_name(small_gguf, "blk.0.attn_q.weight")
    overwrite_bytes(small_gguf, second + 4 + 16 + 4, struct.pack("<Q", 0))

    _reject(small_gguf, "blk.0.attn_q.weight", "overlapping")


def test_scan_rejects_huge_last_tensor_as_truncated_data(tmp_path):
    path = write_gguf(tmp_path / "m.gguf", n_tensors=2)
    overwrite_bytes(path, _after_tensor_name(path, "blk.1.weight") + 4, struct.pack("<Q", 1 << 40))

    _reject(path, "truncated tensor data")


def test_scan_raises_only_invalid_gguf_on_random_header_damage(small_gguf):
    data = small_gguf.read_bytes()
    header_end = scan_gguf_header(small_gguf).data_offset
    rng = random.Random(20240607)
    for _ in range(2000):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            damaged[rng.randrange(4, header_end)] = rng.randrange(256)
        if rng.random() < 0.2:
            del damaged[rng.randrange(len(damaged)):]
        small_gguf.write_bytes(damaged)
        try:
            scan_gguf_header(small_gguf)
        except InvalidGGUF:
            pass


def test_scan_of_the_real_gemma_model(gemma_gguf):
    header = scan_gguf_header(gemma_gguf, list_tensors=True)

    assert header.architecture == "gemma3"
    assert header.data_end == header.file_size == os.path.getsize(gemma_gguf)
    assert header.tensor_count == len(header.tensors) == 236
    # 32768, 268098176 and file type 15 as gguf.GGUFReader(path).fields read them once (20 s, too slow to repeat);
    # the model card says 268M parameters (tied embeddings: token_embd doubles as the output layer).
    assert header.context_length == 32768
    assert header.parameter_count == 268_098_176
    assert header.quantization == "Q4_K_M"
    assert header.metadata["tokenizer.ggml.tokens"] == SkippedValue("ARRAY[STRING]", 262144)
    assert {QType(t.ggml_type).name for t in header.tensors} >= {"Q4_K", "Q6_K"}
