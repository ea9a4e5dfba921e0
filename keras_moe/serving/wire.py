"""Messages between the server and its version workers: a JSON header plus raw array bytes, no pickle.

A message on the socket is `<8-byte big-endian length><payload>`; a payload is
`<4-byte header length><header JSON><array bytes>`. The header's `"arrays"` lists each array as
`[name, dtype, shape, byte count]`: numeric arrays travel as their raw bytes (`dtype` is a numpy
dtype string such as `"<f4"`), string arrays (`dtype` `"string"`) as int64 item lengths followed by
the items' bytes. Only numeric and boolean dtypes are accepted, so nothing decoded here can run code.
"""

import json
import struct

import numpy as np

_LENGTH = struct.Struct(">Q")
_HEADER = struct.Struct(">I")
NUMERIC_KINDS = "biuf"


class ConnectionClosed(ConnectionError):
    """The other process closed the socket (or died)."""


def pack(header, arrays=None):
    """`header` (JSON-able dict) and `{name: numpy array}` -> one payload."""
    entries, buffers = [], []
    for name, array in (arrays or {}).items():
        array = np.asarray(array)
        if array.dtype == object or array.dtype.kind == "S":
            items = [bytes(item) for item in array.reshape(-1)]
            data = np.array([len(item) for item in items], np.int64).tobytes() + b"".join(items)
            entries.append([name, "string", list(array.shape), len(data)])
        else:
            if array.dtype.kind not in NUMERIC_KINDS:
                raise TypeError(f"Array {name!r} has dtype {array.dtype}; only numbers, booleans and bytes travel.")
            data = np.ascontiguousarray(array).tobytes()
            entries.append([name, array.dtype.str, list(array.shape), len(data)])
        buffers.append(data)
    head = json.dumps(dict(header, arrays=entries)).encode()
    return b"".join([_HEADER.pack(len(head)), head, *buffers])


def unpack(payload):
    """One payload -> `(header, {name: numpy array})`."""
    view = memoryview(payload)
    (size,) = _HEADER.unpack_from(view)
    header = json.loads(bytes(view[_HEADER.size:_HEADER.size + size]))
    offset, arrays = _HEADER.size + size, {}
    for name, dtype, shape, count in header.pop("arrays"):
        data = view[offset:offset + count]
        offset += count
        if dtype == "string":
            items = int(np.prod(shape))
            lengths = np.frombuffer(data[:8 * items], np.int64)
            ends = np.cumsum(lengths) + 8 * items
            values = np.empty(items, dtype=object)
            values[:] = [bytes(data[end - length:end]) for length, end in zip(lengths, ends)]
            arrays[name] = values.reshape(shape)
        else:
            if np.dtype(dtype).kind not in NUMERIC_KINDS:
                raise ValueError(f"Array {name!r} has dtype {dtype}; only numbers, booleans and bytes travel.")
            arrays[name] = np.frombuffer(data, np.dtype(dtype)).reshape(shape)
    return header, arrays


def send(sock, payload):
    """Writes one payload; callers that share `sock` between threads hold a lock around this."""
    sock.sendall(_LENGTH.pack(len(payload)))
    sock.sendall(payload)


def receive(sock):
    """The next payload from `sock`; `ConnectionClosed` at the end of the stream."""
    (size,) = _LENGTH.unpack(_read_exactly(sock, _LENGTH.size))
    return _read_exactly(sock, size)


def _read_exactly(sock, size):
    buffer = bytearray(size)
    view, done = memoryview(buffer), 0
    while done < size:
        got = sock.recv_into(view[done:])
        if not got:
            raise ConnectionClosed("The other process closed the connection.")
        done += got
    return buffer
