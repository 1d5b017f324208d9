"""Reading what is left of a rosbag2 storage file that rosbags cannot open.

A recorder that loses power leaves an .mcap without its summary and footer, often cut inside a
chunk, or a .db3 whose last pages were never written. rosbags needs the MCAP footer and an intact
SQLite file; `ros2 bag reindex` would rebuild them. Here, without touching the user's file:

- MCAP: the records are read in file order with the `mcap` package's record parsers; whole
  chunks through its chunk reader, and of the chunk cut short, every message that lies whole in
  the part of it that is there (decompressed as far as it goes, zstd and lz4 stream). Chunks that
  fail their CRC are dropped and counted.
- db3: a temporary copy padded to the page count its header records (SQLite calls a short file
  malformed as a whole); then every message row whose pages are intact, one row at a time.

Messages come in the order they were recorded (the MCAP file order; the db3 by timestamp).
"""

import logging
import shutil
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Collection, Iterator
from io import BytesIO
from pathlib import Path

import lz4.frame
import zstandard
from mcap.data_stream import ReadDataStream
from mcap.exceptions import McapError
from mcap.opcode import Opcode
from mcap.records import Channel, Chunk, Message, Schema
from mcap.stream_reader import CRCValidationError, breakup_chunk, read_magic
from rosbags.interfaces import Connection, ConnectionExtRosbag2, MessageDefinition, MessageDefinitionFormat
from rosbags.rosbag2.metadata import parse_qos

from nvs_ros.io.bag_files import BagLoss, OpenBag

log = logging.getLogger(__name__)

_RECORD_HEADER = 9
"""MCAP record: opcode (1 byte) + length (8 bytes), then the record."""
_SQLITE_HEADER = 100


def salvage(path: Path) -> OpenBag | None:
    """The intact messages of a damaged .mcap / .db3 file; None when there are none to read."""
    bag: OpenBag = _McapSalvage(path) if path.suffix == ".mcap" else _Db3Salvage(path)
    if not any(c.msgcount for c in bag.connections):
        bag.close()
        return None
    return bag


# --- MCAP -----------------------------------------------------------------------------------

class _McapSalvage(OpenBag):

    def __init__(self, path: Path) -> None:
        super().__init__(path, [])
        self._schemas: dict[int, Schema] = {}
        self._channels: dict[int, Channel] = {}
        self._problem = ""
        counts: Counter[int] = Counter()
        for record in self._records():
            if isinstance(record, Message):
                counts[record.channel_id] += 1
        self.connections = [self._connection(channel, counts[cid]) for cid, channel in self._channels.items()]
        if self._problem:
            self.loss = BagLoss(self._problem, sum(counts.values()), None)

    def messages(self, connections: Collection[Connection]) -> Iterator[tuple[Connection, int, bytes]]:
        by_id = {c.id: c for c in connections}
        for record in self._records():
            if isinstance(record, Message) and record.channel_id in by_id:
                yield by_id[record.channel_id], record.log_time, record.data

    def _connection(self, channel: Channel, count: int) -> Connection:
        schema = self._schemas.get(channel.schema_id)
        msgdef = (MessageDefinition(MessageDefinitionFormat.MSG, schema.data.decode(errors="replace"))
                  if schema is not None and schema.encoding == "ros2msg"
                  else MessageDefinition(MessageDefinitionFormat.NONE, ""))
        qos = parse_qos(channel.metadata.get("offered_qos_profiles", "")) if channel.metadata else []
        return Connection(channel.id, channel.topic, schema.name if schema else "", msgdef, "", count,
                          ConnectionExtRosbag2(channel.message_encoding, qos), self)

    def _records(self) -> Iterator[Schema | Channel | Message]:
        """The file's schemas, channels and messages, as far as they are intact; sets _problem."""
        size = self.path.stat().st_size
        bad_chunks = 0
        with self.path.open("rb") as file:
            stream = ReadDataStream(file)
            try:
                read_magic(stream)
            except (McapError, EOFError, ValueError) as err:
                self._problem = f"{self.path.name} is not an MCAP file ({err})"
                return
            while True:
                start = stream.count
                if size - start < _RECORD_HEADER:
                    self._problem = f"{self.path.name} ends after byte {start} of {size}, without its summary"
                    break
                opcode, length = stream.read1(), stream.read8()
                if start + _RECORD_HEADER + length > size:  # cut inside this record
                    if opcode == Opcode.CHUNK:
                        yield from self._remember(_partial_chunk(file.read()))
                    what = "a chunk" if opcode == Opcode.CHUNK else "a record"
                    self._problem = (f"{self.path.name} is cut at byte {size}, inside {what} that starts "
                                     f"at byte {start}, and has no summary")
                    break
                body = ReadDataStream(BytesIO(stream.read(length) if length else b""))
                if opcode in (Opcode.DATA_END, Opcode.FOOTER):  # what follows repeats the data's index
                    if opcode == Opcode.DATA_END:  # rosbags opens a file with a footer: this one has none
                        self._problem = f"{self.path.name} has no footer: its summary (index) is lost"
                    break
                if opcode == Opcode.CHUNK:
                    try:
                        yield from self._remember(breakup_chunk(Chunk.read(body), validate_crc=True))
                    except (CRCValidationError, McapError, zstandard.ZstdError, RuntimeError,
                            EOFError, ValueError) as err:
                        bad_chunks += 1
                        log.debug("%s: dropping the chunk at byte %d: %s", self.path, start, err)
                else:
                    yield from self._remember(_record(opcode, body, length))
        if bad_chunks:
            chunks = f"{bad_chunks} chunk(s) failed their CRC or did not decompress"
            self._problem = f"{self._problem}; {chunks}" if self._problem else f"{self.path.name}: {chunks}"

    def _remember(self, records: Collection[object]) -> Iterator[Schema | Channel | Message]:
        for record in records:
            if isinstance(record, Schema):
                self._schemas[record.id] = record
            elif isinstance(record, Channel):
                self._channels.setdefault(record.id, record)
            if isinstance(record, (Schema, Channel, Message)):
                yield record


def _record(opcode: int, body: ReadDataStream, length: int) -> list[object]:
    """A schema, channel or message record (others are not needed), parsed by mcap."""
    if opcode == Opcode.SCHEMA:
        return [Schema.read(body)]
    if opcode == Opcode.CHANNEL:
        return [Channel.read(body)]
    if opcode == Opcode.MESSAGE:
        return [Message.read(body, length)]
    return []


def _partial_chunk(body: bytes) -> list[object]:
    """The whole records in a chunk record that the file's end cuts short."""
    try:
        chunk = Chunk.read(ReadDataStream(BytesIO(body)))  # its data: what is left of it
    except (McapError, EOFError, ValueError):
        return []
    try:
        if chunk.compression == "zstd":
            data = zstandard.ZstdDecompressor().decompressobj().decompress(chunk.data)
        elif chunk.compression == "lz4":
            data = lz4.frame.LZ4FrameDecompressor().decompress(chunk.data)
        else:
            data = chunk.data
    except (zstandard.ZstdError, RuntimeError) as err:
        log.debug("cut chunk does not decompress: %s", err)
        return []
    records: list[object] = []
    offset = 0
    while offset + _RECORD_HEADER <= len(data):
        opcode = data[offset]
        length = int.from_bytes(data[offset + 1:offset + _RECORD_HEADER], "little")
        end = offset + _RECORD_HEADER + length
        if end > len(data):
            break  # the record the cut runs through
        records += _record(opcode, ReadDataStream(BytesIO(data[offset + _RECORD_HEADER:end])), length)
        offset = end
    return records


# --- db3 ------------------------------------------------------------------------------------

class _Db3Salvage(OpenBag):

    def __init__(self, path: Path) -> None:
        super().__init__(path, [])
        self._work = tempfile.TemporaryDirectory(prefix="nvs_ros_db3_")
        copy = Path(self._work.name) / path.name
        shutil.copyfile(path, copy)
        padded = _pad_to_header_size(copy)
        self._db = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
        self._rows: list[tuple[int, int, int]] = []  # (timestamp, row id, topic id) of readable rows
        listed, unreadable = self._list_rows()
        topics = self._topics()
        counts = Counter(topic for _, _, topic in self._rows)
        self.connections = [c._replace(msgcount=counts[c.id]) for c in topics]
        problems = []
        if padded:
            problems.append(f"{path.name} is cut short ({padded} bytes of its last pages missing)")
        if not listed:
            problems.append(f"{path.name}: the message table is damaged part way")
        if unreadable:
            problems.append(f"{unreadable} message rows of {path.name} are unreadable")
        if problems:
            self.loss = BagLoss("; ".join(problems), len(self._rows), unreadable if listed else None)

    def _topics(self) -> list[Connection]:
        try:
            cursor = self._db.execute("SELECT * FROM topics ORDER BY id")
            columns = [d[0] for d in cursor.description]
            rows = [dict(zip(columns, row)) for row in cursor]
        except sqlite3.Error as err:
            log.debug("%s: topics table unreadable: %s", self.path, err)
            return []
        return [Connection(row["id"], row["name"], row["type"], MessageDefinition(MessageDefinitionFormat.NONE, ""),
                           row.get("type_description_hash") or "", 0,
                           ConnectionExtRosbag2(row.get("serialization_format") or "cdr",
                                                parse_qos(row.get("offered_qos_profiles") or "")), self)
                for row in rows]

    def _list_rows(self) -> tuple[bool, int]:
        """Fill _rows with the readable message rows; (the table listed to its end, rows unreadable)."""
        listed, found = True, []
        try:
            for row in self._db.execute("SELECT id, topic_id, timestamp FROM messages ORDER BY id"):
                found.append(row)
        except sqlite3.Error as err:  # a damaged page of the table: the rows before it are kept
            log.debug("%s: message table damaged after %d rows: %s", self.path, len(found), err)
            listed = False
        unreadable = 0
        for row_id, topic_id, stamp in found:
            try:
                data = self._db.execute("SELECT data FROM messages WHERE id = ?", (row_id,)).fetchone()
            except sqlite3.Error:
                data = None
            # A row in the zero-padded pages reads as NULLs: it is one of the lost ones.
            if isinstance(topic_id, int) and isinstance(stamp, int) and data and isinstance(data[0], bytes):
                self._rows.append((stamp, row_id, topic_id))
            else:
                unreadable += 1
        self._rows.sort()
        return listed, unreadable

    def messages(self, connections: Collection[Connection]) -> Iterator[tuple[Connection, int, bytes]]:
        by_id = {c.id: c for c in connections}
        for stamp, row_id, topic_id in self._rows:
            if topic_id in by_id:
                (data,) = self._db.execute("SELECT data FROM messages WHERE id = ?", (row_id,)).fetchone()
                yield by_id[topic_id], stamp, data

    def close(self) -> None:
        self._db.close()
        self._work.cleanup()


def _pad_to_header_size(db_path: Path) -> int:
    """Pad a SQLite file with zero bytes to the page count in its header; bytes added."""
    with db_path.open("r+b") as file:
        header = file.read(_SQLITE_HEADER)
        if len(header) < _SQLITE_HEADER or not header.startswith(b"SQLite format 3\0"):
            return 0
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        pages = int.from_bytes(header[28:32], "big")
        size = file.seek(0, 2)
        missing = pages * page_size - size
        if missing > 0:
            file.write(bytes(missing))
        return max(0, missing)
