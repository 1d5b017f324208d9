"""Opening any bag people have, read one way: its connections and its messages as ROS 2 CDR.

Kinds of bag (`is_bag`):
- a rosbag2 folder (metadata.yaml + .mcap or .db3 files), or one .mcap / .db3 file (rosbags);
- a rosbag2 folder whose metadata.yaml is missing (a recorder that lost power writes it last):
  its storage files are read as they are, as `ros2 bag reindex` would rebuild it;
- a ROS 1 .bag (rosbags' AnyReader): messages are converted to the ROS 2 types of the same
  name (CDR), so the rest of nvs_ros and `play`'s publishers see ROS 2 messages only;
- a damaged storage file (an .mcap without its summary or cut mid-chunk, a .db3 cut short):
  rosbags cannot open it, so `bag_salvage` reads every intact message and the loss is counted.

What was lost or rebuilt is `OpenBag.loss` (None for a sound bag); read_bag and play report it.
"""

import heapq
import logging
import sqlite3
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from rosbags.convert.converter import LATCH, STATIC_MSGTYPE_RENAMES, is_same_wireformat, migrate_bytes
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.interfaces import Connection, ConnectionExtRosbag2
from rosbags.rosbag2 import Reader, ReaderError
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, get_typestore

from nvs_ros.io.errors import BagError
from nvs_ros.io.rosbag1_salvage import Rosbag1Salvage

log = logging.getLogger(__name__)

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
"""Message definitions for (de)serializing; sensor_msgs and tf2_msgs are stable across distros."""
STORAGE_SUFFIXES = (".mcap", ".db3")
"""rosbag2 storage files."""
ROS1_SUFFIX = ".bag"
BAG_SUFFIXES = (*STORAGE_SUFFIXES, ROS1_SUFFIX)
_READ_ERRORS = (ReaderError, AnyReaderError, sqlite3.Error, OSError, EOFError, KeyError, ValueError)


@dataclass(frozen=True)
class BagLoss:
    """What a damaged bag lost, or what had to be rebuilt to read it."""

    problem: str
    """What is damaged, e.g. "bag.mcap ends mid-chunk at byte 26401 of 29335"."""
    messages_read: int
    """Messages that could be read."""
    messages_lost: int | None
    """Messages the bag's own counts (metadata.yaml) have but that could not be read; None when
    no count survived to compare with (a cut file without metadata.yaml)."""

    def __str__(self) -> str:
        lost = "an unknown number" if self.messages_lost is None else str(self.messages_lost)
        return f"{self.problem}: read {self.messages_read} messages, {lost} lost"


class OpenBag:
    """An open bag: `connections` (ROS 2 message types, CDR) and their messages in time order."""

    def __init__(self, path: Path, connections: list[Connection], custom: dict[str, str] | None = None,
                 loss: BagLoss | None = None) -> None:
        self.path = path
        self.connections = connections
        self.custom = custom or {}
        """rosbag2 metadata.yaml custom_data ({} for other bags)."""
        self.loss = loss

    def messages(self, connections: Collection[Connection]) -> Iterator[tuple[Connection, int, bytes]]:
        """(connection, bag time ns, CDR bytes) of `connections`, in time order."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the files (idempotent)."""


class _Rosbag2(OpenBag):
    """A bag rosbags' rosbag2 Reader opens (folder or storage file)."""

    def __init__(self, reader: Reader, path: Path) -> None:
        custom = getattr(reader.storage.metadata, "custom", None) or {}
        super().__init__(path, list(reader.connections), custom)
        self._reader: Reader | None = reader

    def messages(self, connections: Collection[Connection]) -> Iterator[tuple[Connection, int, bytes]]:
        if self._reader is None:
            raise BagError(f"{self.path}: the bag is closed")
        yield from self._reader.messages(connections=connections)

    def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()


class _Rosbag1(OpenBag):
    """A ROS 1 bag; each message converted to CDR of the ROS 2 type of the same name. `reader`:
    rosbags' AnyReader, or io.rosbag1_salvage's reader of a bag without its index."""

    def __init__(self, reader: "AnyReader | Rosbag1Salvage", path: Path, loss: BagLoss | None = None) -> None:
        self._reader: AnyReader | Rosbag1Salvage | None = reader
        self._convert: dict[int, Callable[[bytes], Any]] = {}
        self._original: dict[int, Connection] = {}
        connections = []
        cache: dict[str, object] = {}
        for connection in reader.connections:
            msgtype = STATIC_MSGTYPE_RENAMES.get(connection.msgtype, connection.msgtype)
            if connection.msgtype not in reader.typestore.fielddefs:  # a definition that does not parse
                log.warning("%s: %s (%s) has a message definition rosbags cannot parse; not read",
                            path, connection.topic, connection.msgtype)
                continue
            if msgtype not in TYPESTORE.fielddefs:  # no ROS 2 type to publish or decode it as
                log.warning("%s: %s (%s) has no ROS 2 type of that name; not read",
                            path, connection.topic, connection.msgtype)
                continue
            if is_same_wireformat(reader.typestore, TYPESTORE, connection.msgtype, msgtype):
                convert = partial(TYPESTORE.ros1_to_cdr, typename=msgtype)
            else:  # fields differ between the ROS 1 and ROS 2 definitions: copied by name
                convert = partial(migrate_bytes, reader.typestore, TYPESTORE, connection.msgtype, msgtype,
                                  cache, src_is2=False, dst_is2=True)
            # ROS 1 latching is ROS 2's transient local durability (as rosbags' converter maps it).
            ext = ConnectionExtRosbag2("cdr", LATCH if connection.ext.latching else [])
            connections.append(connection._replace(msgtype=msgtype, ext=ext))
            self._convert[connection.id] = convert
            self._original[connection.id] = connection
        super().__init__(path, connections, loss=loss)

    def messages(self, connections: Collection[Connection]) -> Iterator[tuple[Connection, int, bytes]]:
        if self._reader is None:
            raise BagError(f"{self.path}: the bag is closed")
        by_id = {c.id: c for c in connections}
        for original, stamp_ns, raw in self._reader.messages(connections=[self._original[i] for i in by_id]):
            try:
                cdr = bytes(self._convert[original.id](raw))
            except (SerdeError, ValueError, IndexError, KeyError) as err:
                # Passed on as a message that does not deserialize: the reader skips and counts it.
                log.debug("%s: a ROS 1 %s message does not convert: %s", self.path, original.msgtype, err)
                cdr = b""
            yield by_id[original.id], stamp_ns, cdr

    def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()


class _Parts(OpenBag):
    """Several storage files read as one bag (a folder whose metadata.yaml is missing or whose
    files rosbags cannot open together): connections merged by topic and type."""

    def __init__(self, path: Path, parts: list[OpenBag], custom: dict[str, str], loss: BagLoss | None) -> None:
        self._parts = parts
        self._members: dict[int, list[tuple[OpenBag, Connection]]] = {}
        merged: dict[tuple[str, str], Connection] = {}
        for part in parts:
            for connection in part.connections:
                key = (connection.topic, connection.msgtype)
                if key not in merged:
                    merged[key] = connection._replace(id=len(merged) + 1, msgcount=0, owner=self)
                merged[key] = merged[key]._replace(msgcount=merged[key].msgcount + connection.msgcount)
                self._members.setdefault(merged[key].id, []).append((part, connection))
        super().__init__(path, list(merged.values()), custom, loss)

    def messages(self, connections: Collection[Connection]) -> Iterator[tuple[Connection, int, bytes]]:
        wanted = {c.id: c for c in connections}
        streams = []
        for part in self._parts:
            merged_of = {member.id: wanted[merged_id] for merged_id, members in self._members.items()
                         if merged_id in wanted for owner, member in members if owner is part}
            if merged_of:
                own = [c for c in part.connections if c.id in merged_of]
                streams.append(_relabelled(part.messages(own), merged_of))
        for stamp, connection, raw in heapq.merge(*streams, key=lambda message: message[0]):
            yield connection, stamp, raw

    def close(self) -> None:
        for part in self._parts:
            part.close()


def _relabelled(messages: Iterator[tuple[Connection, int, bytes]],
                merged_of: dict[int, Connection]) -> Iterator[tuple[int, Connection, bytes]]:
    """A part's messages as (stamp, merged connection, raw), for merging by stamp."""
    for connection, stamp, raw in messages:
        yield stamp, merged_of[connection.id], raw


def is_bag(path: str | Path) -> bool:
    """True for a rosbag2 folder (metadata.yaml, or .mcap / .db3 files without it), an .mcap /
    .db3 storage file, or a ROS 1 .bag file."""
    path = Path(path)
    if path.is_dir():
        return (path / "metadata.yaml").is_file() or bool(_storage_files(path))
    return path.is_file() and path.suffix in BAG_SUFFIXES


def open_reader(path: str | Path) -> OpenBag:
    """The bag at `path`, open; BagError when nothing of it can be read."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"{path} does not exist")
    if not is_bag(path):
        raise BagError(f"{path} is not a ROS bag (a rosbag2 folder, an {' / '.join(STORAGE_SUFFIXES)} "
                       f"file or a ROS 1 {ROS1_SUFFIX} file)")
    if path.suffix == ROS1_SUFFIX:
        return _open_rosbag1(path)
    try:
        reader = Reader(path)
        reader.open()
        return _Rosbag2(reader, path)
    except _READ_ERRORS as err:
        if path.is_file():
            return _open_damaged(path, err)
        error: Exception = err
    return _open_folder_files(path, error)


def read_messages(reader: OpenBag, connections: Collection[Connection],
                  path: str | Path) -> Iterator[tuple[Connection, int, bytes]]:
    """(connection, bag time ns, CDR bytes) of `connections` in time order; read errors as BagError."""
    if not connections:
        return
    try:
        yield from reader.messages(connections)
    except _READ_ERRORS as err:
        raise BagError(f"{path}: cannot read the bag (truncated or corrupt?): {err}") from err


def _open_rosbag1(path: Path) -> OpenBag:
    reader = AnyReader([path])
    try:
        reader.open()
    except _READ_ERRORS as err:
        # rosbags reads ROS 1 bags through their index, which a bag cut short has lost.
        salvaged = Rosbag1Salvage(path)
        read = sum(c.msgcount for c in salvaged.connections)
        if not read:
            raise BagError(f"{path}: cannot open the ROS 1 bag, and no message in it is whole "
                           f"({salvaged.problem or err})") from err
        log.debug("%s: rosbags cannot open it (%s); salvaged", path, err)
        return _Rosbag1(salvaged, path, BagLoss(salvaged.problem or f"{path.name}: {err}", read, None))
    return _Rosbag1(reader, path)


def _open_damaged(path: Path, error: Exception) -> OpenBag:
    """A storage file rosbags cannot open, read by bag_salvage; BagError if nothing is readable."""
    from nvs_ros.io.bag_salvage import salvage  # only damaged bags need it

    bag = salvage(path)
    if bag is None:
        raise BagError(f"{path}: cannot open the bag (truncated or corrupt?): {error}") from error
    log.debug("%s: rosbags cannot open it (%s); salvaged", path, error)
    return bag


def _open_folder_files(folder: Path, error: Exception) -> OpenBag:
    """A rosbag2 folder rosbags cannot open as a whole: each storage file on its own, counted
    against metadata.yaml's message counts when it survived."""
    files = _storage_files(folder)
    if not files:
        raise BagError(f"{folder}: cannot open the bag: {error}") from error
    metadata = _metadata(folder)
    from_db3 = metadata is None and len(files) == 1 and files[0].suffix == ".db3"
    if from_db3:  # rosbag2 (and rosbags) keep a copy of metadata.yaml in the .db3, as reindex uses
        metadata = _metadata_in_db3(files[0])
    expected = None if metadata is None else int(metadata.get("message_count", 0))
    parts: list[OpenBag] = []
    try:
        for file in files:
            try:
                reader = Reader(file)
                reader.open()
                parts.append(_Rosbag2(reader, file))
            except _READ_ERRORS as err:
                parts.append(_open_damaged(file, err))
    except BaseException:
        for part in parts:
            part.close()
        raise
    read = sum(c.msgcount for part in parts for c in part.connections)
    damaged = [part.loss for part in parts if part.loss is not None]
    problems = [loss.problem for loss in damaged]
    if metadata is None or from_db3:
        names = ", ".join(f.name for f in files)
        problems.insert(0, f"{folder.name} has no metadata.yaml; read {names} as `ros2 bag reindex` would")
    elif read < expected and not damaged:
        problems.append(f"{folder.name}: metadata.yaml counts {expected} messages")
    if expected is not None:  # metadata.yaml's count is the one to go by
        lost: int | None = max(0, expected - read)
    else:
        part_lost = [loss.messages_lost for loss in damaged]
        lost = None if None in part_lost else sum(part_lost)
    loss = BagLoss("; ".join(problems), read, lost) if problems else None
    custom = (metadata or {}).get("custom_data") or {}
    return _Parts(folder, parts, custom, loss)


def _storage_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in STORAGE_SUFFIXES)


def _metadata(folder: Path) -> dict[str, Any] | None:
    """metadata.yaml's rosbag2_bagfile_information, None when missing or unreadable."""
    try:
        info = yaml.safe_load((folder / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    return info if isinstance(info, dict) else None


def _metadata_in_db3(db3: Path) -> dict[str, Any] | None:
    """The copy of metadata.yaml in a .db3's metadata table (rosbag2 writes it on closing)."""
    try:
        with sqlite3.connect(f"file:{db3}?immutable=1", uri=True) as db:
            row = db.execute("SELECT metadata FROM metadata ORDER BY metadata_version DESC LIMIT 1").fetchone()
        info = yaml.safe_load(row[0]) if row else None
    except (sqlite3.Error, yaml.YAMLError):
        return None
    return info if isinstance(info, dict) else None
