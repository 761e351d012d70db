"""IDX reader: round trips on small generated files (raw and gzipped) and every corruption case."""

import gzip
import struct

import numpy as np
import pytest

from mlpsearch.engine.data.idx import DataError, read_idx, read_image_label_pair


def write(path, data: bytes, gz: bool = False):
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, size=(7, 5, 4), dtype=np.uint8)


@pytest.mark.parametrize("gz", [False, True])
def test_round_trip_uint8(tmp_path, idx_bytes, images, gz):
    path = write(tmp_path / "imgs-idx3-ubyte", idx_bytes(images), gz=gz)
    out = read_idx(path)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, images)


def test_gzip_detected_from_content_not_name(tmp_path, idx_bytes, images):
    raw_named_gz = write(tmp_path / "a.gz", idx_bytes(images))
    gz_named_raw = write(tmp_path / "b-idx3-ubyte", idx_bytes(images), gz=True)
    np.testing.assert_array_equal(read_idx(raw_named_gz), images)
    np.testing.assert_array_equal(read_idx(gz_named_raw), images)


@pytest.mark.parametrize(
    ("type_code", "values"),
    [
        (0x09, np.array([-128, 0, 127], dtype=np.int8)),
        (0x0B, np.array([-300, 0, 300], dtype=np.int16)),
        (0x0C, np.array([[-70000, 1], [2, 70000]], dtype=np.int32)),
        (0x0D, np.array([0.5, -1.25], dtype=np.float32)),
        (0x0E, np.array([1e-300, 3.5], dtype=np.float64)),
    ],
)
def test_other_types_are_decoded_big_endian(tmp_path, idx_bytes, type_code, values):
    out = read_idx(write(tmp_path / "x", idx_bytes(values, type_code)))
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, values)


def corruptions(good: bytes) -> dict[str, tuple[bytes, str]]:
    """Damaged versions of the IDX file ``good``: case -> (content, phrase of the error)."""
    gz = gzip.compress(good)
    flipped = bytearray(gz)
    flipped[len(gz) // 2] ^= 0xFF
    return {
        "empty": (b"", "too short"),
        "three bytes": (b"\0\0\x08", "too short"),
        "bad magic": (b"\x01" + good[1:], "bad magic number"),
        "unknown type": (good[:2] + b"\x07" + good[3:], "bad magic number"),
        "zero dims": (good[:3] + b"\0" + good[4:], "bad magic number"),
        "truncated header": (good[:9], "truncated IDX header"),
        "truncated data": (good[:-5], "truncated"),
        "trailing bytes": (good + b"\0\0", "trailing bytes"),
        "cut gzip": (gz[: len(gz) // 2], "truncated gzip"),
        "corrupt gzip": (bytes(flipped), "gzip"),
        "dims too large": (good[:4] + struct.pack(">I", 8) + good[8:], "truncated"),
    }


@pytest.mark.parametrize("case", list(corruptions(bytes(16))))  # the case names
def test_corruption_is_one_line_naming_file_and_problem(tmp_path, images, idx_bytes, case):
    data, phrase = corruptions(idx_bytes(images))[case]
    path = write(tmp_path / f"bad-{case.replace(' ', '-')}", data)
    with pytest.raises(DataError) as err:
        read_idx(path)
    message = str(err.value)
    assert str(path) in message
    assert phrase in message
    assert "\n" not in message


def test_truncated_message_gives_sizes(tmp_path, idx_bytes, images):
    path = write(tmp_path / "t", idx_bytes(images)[:-5])
    with pytest.raises(DataError, match=r"7x5x4 uint8 = 140 bytes, file holds 135"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "nope")


@pytest.mark.parametrize("gz", [False, True])
def test_pair_flattens_images(tmp_path, idx_bytes, images, gz):
    labels = np.arange(7, dtype=np.uint8) % 3
    X, y = read_image_label_pair(
        write(tmp_path / "i", idx_bytes(images), gz), write(tmp_path / "l", idx_bytes(labels), gz)
    )
    assert X.shape == (7, 20) and X.dtype == np.uint8
    np.testing.assert_array_equal(X[3], images[3].ravel())
    np.testing.assert_array_equal(y, labels)


@pytest.mark.parametrize(
    ("labels", "image_shape", "phrase", "culprit"),
    [
        (np.zeros(6, np.uint8), (7, 5, 4), "6 labels for 7 images", "l"),
        (np.array([0, 1, 2, 10, 0, 0, 0], np.uint8), (7, 5, 4), "label 10 at index 3", "l"),
        (np.zeros((7, 1), np.uint8), (7, 5, 4), "expected uint8 labels", "l"),
        (np.zeros(7, np.uint8), (7, 20), "expected uint8 images", "i"),
    ],
)
def test_pair_validation(tmp_path, idx_bytes, labels, image_shape, phrase, culprit):
    img_path = write(tmp_path / "i", idx_bytes(np.zeros(image_shape, np.uint8)))
    lab_path = write(tmp_path / "l", idx_bytes(labels))
    with pytest.raises(DataError) as err:
        read_image_label_pair(img_path, lab_path)
    assert phrase in str(err.value)
    assert str(tmp_path / culprit) in str(err.value)


def test_pair_rejects_non_uint8_images(tmp_path, idx_bytes):
    img_path = write(tmp_path / "i", idx_bytes(np.zeros((2, 3, 3), np.int32), 0x0C))
    lab_path = write(tmp_path / "l", idx_bytes(np.zeros(2, np.uint8)))
    with pytest.raises(DataError, match="found int32"):
        read_image_label_pair(img_path, lab_path)
