"""Writers of tiny dataset files in the exact on-disk formats the real readers parse.

Each follows the published format (or, for tonic's preprocessed releases, what tonic's reader expects),
so the tests exercise the real tonic / numpy code paths instead of mocks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_shd(path: Path, samples: list[tuple[list[float], list[int], int]]) -> Path:
    """SHD HDF5: ragged spikes/times (s) and spikes/units per recording, labels, and the extra/ group."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        times = handle.create_dataset("spikes/times", (len(samples),), dtype=h5py.vlen_dtype(np.float32))
        units = handle.create_dataset("spikes/units", (len(samples),), dtype=h5py.vlen_dtype(np.uint16))
        for i, (t, u, _) in enumerate(samples):
            times[i] = np.asarray(t, dtype=np.float32)
            units[i] = np.asarray(u, dtype=np.uint16)
        handle["labels"] = np.asarray([label for *_, label in samples], dtype=np.uint16)
        handle["extra/keys"] = np.asarray([f"digit-{k}".encode() for k in range(20)])
        handle["extra/speaker"] = np.zeros(len(samples), dtype=np.uint16)
    return path


def write_nmnist_bin(path: Path, events: list[tuple[int, int, int, int]]) -> Path:
    """N-MNIST .bin: 5 bytes per event, x, y, then polarity (bit 7) and a 23-bit timestamp in µs."""
    raw = bytearray()
    for x, y, p, t in events:
        raw += bytes([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(raw))
    return path


def write_gesture_npy(path: Path, events: list[tuple[int, int, int, int]]) -> Path:
    """tonic's DVS Gesture .npy: an [N, 4] array of x, y, polarity, t in milliseconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(events, dtype=np.int64).reshape(-1, 4))
    return path


_AEDAT4_MAGIC = b"#!AER-DAT4.0\r\n"
_AEDAT4_DESCRIPTION = (
    '<dv version="2.0"><node name="outInfo"><node name="0">'
    '<attr key="typeIdentifier" type="string">EVTS</attr>'
    '<node name="info"><attr key="sizeX" type="int">128</attr><attr key="sizeY" type="int">128</attr></node>'
    "</node></node></dv>"
)


def write_aedat4(path: Path, events: list[tuple[int, int, int, int]]) -> Path:
    """Uncompressed AEDAT 4 with one event stream: size-prefixed IOHeader and EventPacket flatbuffers.

    Events are (t µs, x, y, on); the struct layout (int64 t, int16 x, int16 y, bool on, 3 bytes pad)
    follows the AEDAT4 events.fbs schema.
    """
    import flatbuffers

    header = flatbuffers.Builder(256)
    description = header.CreateString(_AEDAT4_DESCRIPTION)
    header.StartObject(3)
    header.PrependUOffsetTRelativeSlot(2, description, 0)
    header.FinishSizePrefixed(header.EndObject(), b"IOHE")

    packet = flatbuffers.Builder(1024)
    packet.StartVector(16, len(events), 8)
    for t, x, y, on in reversed(events):
        packet.Prep(8, 16)
        packet.Pad(3)
        packet.PrependBool(bool(on))
        packet.PrependInt16(y)
        packet.PrependInt16(x)
        packet.PrependInt64(t)
    elements = packet.EndVector()
    packet.StartObject(1)
    packet.PrependUOffsetTRelativeSlot(0, elements, 0)
    packet.FinishSizePrefixed(packet.EndObject(), b"EVTS")
    payload = bytes(packet.Output())
    stream = (0).to_bytes(4, "little") + len(payload).to_bytes(4, "little") + payload

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_AEDAT4_MAGIC + bytes(header.Output()) + stream)
    return path


def write_cifar_bin(path: Path, labels: list[tuple[int, ...]], images: np.ndarray) -> Path:
    """CIFAR binary version: per record the label byte(s) (CIFAR-100: coarse, fine), then 3072 bytes
    of pixels, channel-major (1024 red, 1024 green, 1024 blue), rows top to bottom."""
    records = [bytes(lab) + img.astype(np.uint8).tobytes() for lab, img in zip(labels, images, strict=True)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(records))
    return path


def write_image(path: Path, pixels: np.ndarray) -> Path:
    """One ImageNet-folder image ([H, W, 3] uint8). Stored as PNG under its .JPEG name: PIL (and the reader)
    decode by content, and PNG keeps the pixel values exact for the assertions."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG")
    return path


def write_mnist1d_cache(data_dir: Path, seed: int = 0) -> Path:
    """The mnist1d cache file the plugin would generate, at its real name and array shapes, with random
    standardized signals: a stand-in that costs no generation time."""
    from tawq_plugins.datasets import embedded

    rng = np.random.default_rng(seed)
    arrays = {key: (rng.standard_normal(shape).astype(np.float32) if len(shape) == 2
                    else rng.integers(0, 10, shape).astype(np.int64))
              for key, shape in embedded.MNIST1D_SHAPES.items()}
    path = embedded._mnist1d_cache_file(str(data_dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path
