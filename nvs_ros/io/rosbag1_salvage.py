"""Reading what is left of a ROS 1 bag that has lost its index.

`rosbag record` writes a bag's index (connection and chunk-info records) when it closes, and
the position of that index into the bag header; a recorder that loses power leaves no index
(the header says 0), a copy cut short leaves a position past the file's end. rosbags reads ROS 1
bags only through that index; `rosbag reindex` would rebuild it. Here, without touching the
user's file, the records are read in file order with rosbags' record-header parser: each chunk
decompressed (of the chunk the end cuts, as far as it goes: none, bz2 and lz4 stream), and
inside it every connection and every message that lies whole.

`Rosbag1Salvage` offers what io.bag_files reads from rosbags' AnyReader for a ROS 1 bag:
`connections` (with their message counts), a `typestore` of the bag's own message definitions,
and `messages`. Messages come in file order, which is the order they were recorded in.
"""

import bz2
import re
import struct
from collections import Counter
from collections.abc import Collection, Iterator
from io import BytesIO
from pathlib import Path

import lz4.frame
from rosbags.interfaces import Connection, ConnectionExtRosbag1, MessageDefinition, MessageDefinitionFormat
from rosbags.rosbag1.reader import Header, ReaderError, RecordType, normalize, read_uint32
from rosbags.typesys import Stores, TypesysError, get_types_from_msg, get_typestore
from rosbags.typesys.msg import normalize_msgtype

_MAGIC = re.compile(rb"#ROSBAG V2\.0\n")


class Rosbag1Salvage:
    """The intact connections and messages of a ROS 1 bag without a readable index (module
    docstring); `problem` says what is damaged."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problem = ""
        self._connections: dict[int, Connection] = {}
        counts: Counter[int] = Counter(connection_id for connection_id, _, _ in self._messages())
        self.connections = [c._replace(msgcount=counts[c.id]) for c in self._connections.values()]
        types: dict = {}
        for connection in self.connections:
            try:
                types.update(get_types_from_msg(connection.msgdef.data, connection.msgtype))
            except TypesysError:  # its messages are not read (io.bag_files logs which)
                continue
        self.typestore = get_typestore(Stores.EMPTY)
        self.typestore.register(types)

    def messages(self, connections: Collection[Connection]) -> Iterator[tuple[Connection, int, bytes]]:
        """(connection, bag time ns, ROS 1 bytes) of `connections`, in file order."""
        by_id = {c.id: c for c in connections}
        for connection_id, stamp_ns, data in self._messages():
            if connection_id in by_id:
                yield by_id[connection_id], stamp_ns, data

    def close(self) -> None:
        """Nothing is held open between reads."""

    def _messages(self) -> Iterator[tuple[int, int, bytes]]:
        """(connection id, time ns, data) of every whole message; remembers the connections and
        sets `problem`."""
        size = self.path.stat().st_size
        name = self.path.name
        with self.path.open("rb") as file:
            if not _MAGIC.fullmatch(file.readline()):
                self.problem = f"{name} is not a ROS 1 bag (version 2.0)"
                return
            while True:
                start = file.tell()
                if start >= size:
                    self.problem = f"{name} ends at byte {size} without its index"
                    return
                try:
                    header = Header.read(file)
                    op = header.get_uint8("op")
                    length = read_uint32(file)
                except ReaderError:
                    self.problem = f"{name} is cut at byte {size}, inside a record that starts at byte {start}"
                    return
                data = file.read(length)
                if op == RecordType.CHUNK:
                    yield from self._chunk(header.get_string("compression"), data)
                elif op == RecordType.CONNECTION and len(data) == length:
                    self._remember(header, data)
                if len(data) < length:
                    what = "a chunk" if op == RecordType.CHUNK else "a record"
                    self.problem = (f"{name} is cut at byte {size}, inside {what} that starts at byte {start}, "
                                    f"and has no index")
                    return

    def _chunk(self, compression: str, data: bytes) -> Iterator[tuple[int, int, bytes]]:
        """The whole messages of a chunk (of what is left of it), remembering its connections."""
        records = BytesIO(_decompressed(compression, data))
        while True:
            try:
                header = Header.read(records)
                op = header.get_uint8("op")
                length = read_uint32(records)
            except ReaderError:
                return  # the chunk's end, or the record the cut runs through
            body = records.read(length)
            if len(body) < length:
                return
            if op == RecordType.CONNECTION:
                self._remember(header, body)
            elif op == RecordType.MSGDATA:
                yield header.get_uint32("conn"), header.get_time("time"), body

    def _remember(self, header: Header, data: bytes) -> None:
        """A connection record: its header names the topic, its data is a header of its type."""
        connection_id = header.get_uint32("conn")
        if connection_id in self._connections:
            return  # the index repeats every connection
        fields = Header.read(BytesIO(struct.pack("<I", len(data)) + data))
        latching = fields.get_string("latching") if "latching" in fields else ""
        self._connections[connection_id] = Connection(
            connection_id, normalize(header.get_string("topic")), normalize_msgtype(fields.get_string("type")),
            MessageDefinition(MessageDefinitionFormat.MSG, fields.get_string("message_definition")),
            fields.get_string("md5sum"), 0,
            ConnectionExtRosbag1(fields.get_string("callerid") if "callerid" in fields else None,
                                 int(latching) if latching else None), self)


def _decompressed(compression: str, data: bytes) -> bytes:
    """A chunk's records, as far as its (possibly cut) data decompresses."""
    try:
        if compression == "bz2":
            return bz2.BZ2Decompressor().decompress(data)
        if compression == "lz4":
            return lz4.frame.LZ4FrameDecompressor().decompress(data)
    except (OSError, RuntimeError, EOFError):
        return b""
    return data if compression == "none" else b""
