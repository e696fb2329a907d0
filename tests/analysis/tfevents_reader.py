"""tfevents_reader.py: an independent reader of TensorBoard event files for the tests: its own
CRC-32C (bitwise, no table), TFRecord framing and protobuf wire-format decoding of
Event / Summary / HistogramProto. Prints the events as JSON.

    python3 tfevents_reader.py FILE            our own decoding (always available)
    python3 tfevents_reader.py --tensorboard FILE   TensorBoard's EventFileLoader (if installed)
"""
import json
import struct
import sys


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(crc):
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def varint(buf, pos):
    value, shift = 0, 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def fields(buf):
    """Yields (field number, wire type, value) of one message."""
    pos = 0
    while pos < len(buf):
        key, pos = varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(buf, pos)
        elif wire == 1:
            value = buf[pos:pos + 8]
            pos += 8
        elif wire == 2:
            n, pos = varint(buf, pos)
            value = buf[pos:pos + n]
            pos += n
        elif wire == 5:
            value = buf[pos:pos + 4]
            pos += 4
        else:
            raise ValueError("wire type %d" % wire)
        yield field, wire, value


def histogram(buf):
    h = {"bucket_limit": [], "bucket": []}
    names = {1: "min", 2: "max", 3: "num", 4: "sum", 5: "sum_squares"}
    for f, w, v in fields(buf):
        if f in names:
            h[names[f]] = struct.unpack("<d", v)[0]
        elif f in (6, 7):
            key = "bucket_limit" if f == 6 else "bucket"
            h[key] += list(struct.unpack("<%dd" % (len(v) // 8), v)) if w == 2 else [struct.unpack("<d", v)[0]]
    return h


def event(buf):
    e = {"wall_time": 0.0, "step": 0, "values": []}
    for f, w, v in fields(buf):
        if f == 1:
            e["wall_time"] = struct.unpack("<d", v)[0]
        elif f == 2:
            e["step"] = v
        elif f == 3:
            e["file_version"] = v.decode()
        elif f == 5:
            for sf, _, sv in fields(v):
                if sf != 1:
                    continue
                val = {}
                for vf, _, vv in fields(sv):
                    if vf == 1:
                        val["tag"] = vv.decode()
                    elif vf == 2:
                        val["simple_value"] = struct.unpack("<f", vv)[0]
                    elif vf == 5:
                        val["histo"] = histogram(vv)
                e["values"].append(val)
    return e


def read(path):
    data = open(path, "rb").read()
    pos, events = 0, []
    while pos < len(data):
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (len_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        if masked(crc32c(header)) != len_crc:
            raise ValueError("length crc mismatch at %d" % pos)
        payload = data[pos + 12:pos + 12 + length]
        (crc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
        if masked(crc32c(payload)) != crc:
            raise ValueError("payload crc mismatch at %d" % pos)
        events.append(event(payload))
        pos += 16 + length
    return events


def read_with_tensorboard(path):
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto import event_pb2

    events = []
    for raw in RawEventFileLoader(path).Load():
        ev = event_pb2.Event.FromString(raw)
        e = {"wall_time": ev.wall_time, "step": ev.step, "values": []}
        if ev.HasField("file_version"):
            e["file_version"] = ev.file_version
        for v in ev.summary.value:
            val = {"tag": v.tag}
            if v.HasField("simple_value"):
                val["simple_value"] = v.simple_value
            if v.HasField("histo"):
                h = v.histo
                val["histo"] = {"min": h.min, "max": h.max, "num": h.num, "sum": h.sum,
                                "sum_squares": h.sum_squares, "bucket_limit": list(h.bucket_limit),
                                "bucket": list(h.bucket)}
            e["values"].append(val)
        events.append(e)
    return events


if __name__ == "__main__":
    if sys.argv[1] == "--tensorboard":
        print(json.dumps(read_with_tensorboard(sys.argv[2])))
    else:
        print(json.dumps(read(sys.argv[1])))
