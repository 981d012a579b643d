"""What the base station hands an ecologist: a CSV index and MegaDetector results per day.

Besides one picture and one JSON sidecar per image (device/service/archive.py), `Reports` keeps
two files per capture day (UTC) under `out_dir/reports/`:

    reports/2018-10-22.csv                 one row per image: file, trap, capture time, boxes
                                           and confidences, bytes, airtime, receive time,
                                           which parts of the container arrived, ...
    reports/megadetector-2018-10-22.json   the day's sidecars merged into one MegaDetector
                                           batch-results file (format 1.4)

Paths in both are relative to `out_dir` (use it as the image base folder in MegaDetector's
tools and in Timelapse). Each image entry has MegaDetector's `datetime` field, the capture
time in EXIF form ("2018:10:22 05:50:00"), which their `generate_csv_report` reads.

Detections and regions. A box whose confidence byte is not 0 came from a detector
(MegaDetector boxes the trap was given) and is a detection of category "1", animal. A box with
confidence 0 (`device.boxes.REGION_CONF`) came from the trap's saliency (spectral residual or
background model): it marks where the trap spent its bits, not an animal, so it is listed under
the image's `wildlink.regions`, never as a detection; an image with only regions has
`"detections": []`, as MegaDetector writes an empty frame.

Every write replaces the day's files atomically, keyed by the image's stem, so the "image
stored" hook may run twice for one image (a restart) without a second row. `rebuild` writes every
day again from the sidecars on disk.

Example:
    >>> reports = Reports(config.out_dir, airtime=lambda n: 1.9)     # doctest: +SKIP
    >>> service.on_stored.append(reports.image_stored)
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from device.imageio import exif_time_text
from device.service.archive import write_atomic
from device.service.logs import event

__all__ = ["CSV_COLUMNS", "FORMAT_VERSION", "Reports", "megadetector_entry",
           "megadetector_sidecar", "part_entries", "uplink_airtime"]

log = logging.getLogger(__name__)

#: MegaDetector batch-results format written (their validator accepts 1.3 and later).
FORMAT_VERSION = "1.4"
DETECTION_CATEGORIES = {"1": "animal", "2": "person", "3": "vehicle"}
#: The trap keeps MegaDetector boxes from this confidence (device.saliency.DEFAULT_THRESHOLD);
#: downstream tools take their default threshold from `detector_metadata`.
TYPICAL_THRESHOLD = 0.2
DETECTOR = "wildlink trap: MegaDetector boxes as sent (8-bit confidence)"
CSV_COLUMNS = ("file", "trap_id", "image_id", "capture_time", "received_at", "status",
               "detections", "max_conf", "boxes", "confidences", "regions", "bytes",
               "airtime_s", "rssi", "snr", "parts", "parts_missing", "name", "camera_file",
               "error")


def part_entries(decoded_parts) -> list[dict]:
    """The sidecar's `wildlink.parts`: each part of the container in stream order (regions,
    info bars, then the context), with whether it arrived.

    `decoded_parts` is `DecodeResult.parts`. `status` is "complete", "partial" (some bands
    decoded as the prior mean, listed in `missing_bands`) or "lost" (its z stream did not
    arrive: the context shows through where a region was lost). `rect` is where the part
    sits in the picture, in pixels (x0, y0, x1, y1).
    """
    return [{"kind": p.part.name, "status": p.status, "rect": [int(v) for v in p.part.rect],
             "coded_size": f"{p.part.coded_width}x{p.part.coded_height}",
             "missing_bands": [int(b) for b in p.missing_bands]} for p in decoded_parts]


def image_status(info: dict) -> str:
    """An image's status from its sidecar: "partial" if a part was lost or any band decoded
    as the prior mean, else "decoded" (sidecars written before container version 2 have no
    `parts`, only the one image's `missing_bands`)."""
    parts = info.get("parts")
    if parts is not None:
        return "partial" if any(p.get("status") != "complete" for p in parts) else "decoded"
    return "partial" if info.get("missing_bands") else "decoded"


def _parts_text(info: dict) -> str:
    """The CSV's `parts` cell: `kind:status` per part in stream order, `;` between parts."""
    return ";".join(f"{p.get('kind')}:{p.get('status')}" for p in info.get("parts") or [])


def _missing_count(info: dict) -> int:
    """Bands decoded as the prior mean, over every part."""
    parts = info.get("parts")
    if parts is not None:
        return sum(len(p.get("missing_bands") or []) for p in parts)
    return len(info.get("missing_bands") or [])


def megadetector_entry(file: str, boxes, info: dict, capture_time: float | None) -> dict:
    """One image of a MegaDetector results file, with wildlink's fields under "wildlink".

    Args:
        file: the picture's path as the results file names it.
        boxes: (bbox [x, y, w, h] normalised, confidence) pairs, as the container sent them.
        info: wildlink's per-image facts (trap id, times, radio, bytes, ...).
        capture_time: unix seconds for MegaDetector's `datetime` (None: no field).
    """
    detections, regions = [], []
    for bbox, conf in boxes:
        box = [round(float(v), 4) for v in bbox]
        if conf > 0:
            detections.append({"category": "1", "conf": round(float(conf), 3), "bbox": box})
        else:
            regions.append({"bbox": box, "source": "saliency"})
    entry = {"file": file}
    if capture_time:
        entry["datetime"] = exif_time_text(capture_time)
    entry["max_detection_conf"] = max((d["conf"] for d in detections), default=0.0)
    entry["detections"] = detections
    entry["wildlink"] = dict(info, regions=regions)
    return entry


def megadetector_sidecar(file: str, boxes, info: dict, capture_time: float | None = None) -> dict:
    """A MegaDetector batch-results document for one picture (its JSON sidecar)."""
    return _document([megadetector_entry(file, boxes, info, capture_time)])


def uplink_airtime(nbytes: int, modulation, frame_limit: int, signed: bool) -> float:
    """Seconds on air of the data frames that carry `nbytes`, each fragment sent once.

    The lossless minimum (resent fragments and acks are not counted), split as the trap's
    `Sender` splits an image: payloads of `frame_limit` minus the frame overhead, the last one
    shorter.
    """
    from device.link import frames

    overhead = frames.data_overhead(signed=signed)
    size = frame_limit - overhead
    count = max(1, math.ceil(nbytes / size))
    last = nbytes - size * (count - 1)
    return (count - 1) * modulation.time_on_air(size + overhead) + modulation.time_on_air(
        last + overhead)


class Reports:
    """The per-day CSV index and merged MegaDetector files of one base station.

    Args:
        out_dir: the base station's picture folder (reports go to `out_dir/reports/`).
        airtime: bytes -> seconds on air (None or returning None: column left empty).
    """

    def __init__(self, out_dir: str | Path,
                 airtime: Callable[[int], float | None] | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.folder = self.out_dir / "reports"
        self.airtime = airtime

    def image_stored(self, stored) -> None:
        """The "image stored" hook: add or replace this image's row and entry for its day."""
        entry = None
        if stored.sidecar is not None:
            entry = self._entry_of(Path(stored.sidecar))
        if entry is not None:
            row = self._row_of(entry)
        else:  # undecodable: no picture, no sidecar; the row says what arrived
            row = self._undecodable_row(stored)
        day = _day(row)
        rows = {r["name"]: r for r in self._read_csv(day)}
        rows[row["name"]] = row
        self._write_csv(day, rows.values())
        if entry is not None:
            entries = {e["file"]: e for e in self._read_megadetector(day)}
            entries[entry["file"]] = entry
            self._write_megadetector(day, entries.values())

    def rebuild(self) -> list[str]:
        """Write every day's files again from the sidecars on disk; returns the days written.

        Rows of undecodable images (which have no sidecar) are kept from the existing CSVs.
        """
        days: dict[str, tuple[dict, dict]] = {}
        for sidecar in sorted(self.out_dir.glob("*/*.json")):
            if sidecar.parent == self.folder:
                continue
            entry = self._entry_of(sidecar)
            if entry is None:
                continue
            row = self._row_of(entry)
            rows, entries = days.setdefault(_day(row), ({}, {}))
            rows[row["name"]] = row
            entries[entry["file"]] = entry
        for path in sorted(self.folder.glob("*.csv")):
            for row in self._read_csv(path.stem):
                if row["status"] == "undecodable":
                    days.setdefault(path.stem, ({}, {}))[0].setdefault(row["name"], row)
        for day, (rows, entries) in days.items():
            self._write_csv(day, rows.values())
            self._write_megadetector(day, entries.values())
        return sorted(days)

    # ------------------------------------------------------------------ records

    def _entry_of(self, sidecar: Path) -> dict | None:
        """The sidecar's image entry, its file made relative to `out_dir`."""
        try:
            document = json.loads(sidecar.read_text())
            entry = dict(document["images"][0])
            entry["wildlink"]["trap_id"]
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            event(log, "report_skipped", logging.WARNING, sidecar=str(sidecar), error=str(exc))
            return None
        entry["file"] = (sidecar.parent / entry["file"]).relative_to(self.out_dir).as_posix()
        return entry

    def _row_of(self, entry: dict) -> dict:
        info = entry["wildlink"]
        detections = entry.get("detections") or []
        nbytes = int(info.get("bytes") or 0)
        return {
            "file": entry["file"],
            "trap_id": info["trap_id"],
            "image_id": info.get("image_id", ""),
            "capture_time": info.get("capture_time", ""),
            "received_at": info.get("received_at", ""),
            "status": image_status(info),
            "detections": len(detections),
            "max_conf": entry.get("max_detection_conf") if detections else "",
            "boxes": ";".join(_bbox_text(d["bbox"]) for d in detections),
            "confidences": ";".join(f"{d['conf']:.3f}" for d in detections),
            "regions": ";".join(_bbox_text(r["bbox"]) for r in info.get("regions") or []),
            "bytes": nbytes,
            "airtime_s": self._airtime(nbytes),
            "rssi": _blank(info.get("rssi")),
            "snr": _blank(info.get("snr")),
            "parts": _parts_text(info),
            "parts_missing": _missing_count(info),
            "name": Path(entry["file"]).stem,
            "camera_file": info.get("camera_file") or "",
            "error": "",
        }

    def _undecodable_row(self, stored) -> dict:
        row = dict.fromkeys(CSV_COLUMNS, "")
        row.update(file="", trap_id=stored.trap_id, image_id=stored.image_id,
                   capture_time=_iso(stored.capture_time) if stored.capture_time else "",
                   received_at=_iso(time.time()), status=stored.status, detections=0,
                   bytes=stored.bytes, airtime_s=self._airtime(stored.bytes),
                   rssi=_blank(stored.rssi), snr=_blank(stored.snr), name=stored.stem,
                   error=stored.error or "")
        return row

    def _airtime(self, nbytes: int) -> str | float:
        if self.airtime is None or nbytes <= 0:
            return ""
        seconds = self.airtime(nbytes)
        return "" if seconds is None else round(seconds, 3)

    # ------------------------------------------------------------------ files

    def _csv_path(self, day: str) -> Path:
        return self.folder / f"{day}.csv"

    def _md_path(self, day: str) -> Path:
        return self.folder / f"megadetector-{day}.json"

    def _read_csv(self, day: str) -> list[dict]:
        try:
            with open(self._csv_path(day), newline="", encoding="utf-8") as f:
                return [dict(r) for r in csv.DictReader(f)]
        except FileNotFoundError:
            return []

    def _write_csv(self, day: str, rows: Iterable[dict]) -> None:
        out = io.StringIO()
        writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: (r["capture_time"], str(r["trap_id"]),
                                                     r["name"])))
        write_atomic(self._csv_path(day), out.getvalue().encode())

    def _read_megadetector(self, day: str) -> list[dict]:
        try:
            return json.loads(self._md_path(day).read_text())["images"]
        except FileNotFoundError:
            return []
        except (ValueError, KeyError, TypeError) as exc:  # damaged by hand: rebuilt from sidecars
            event(log, "report_rebuilt", logging.WARNING, day=day, error=str(exc))
            self.rebuild()
            return json.loads(self._md_path(day).read_text())["images"]

    def _write_megadetector(self, day: str, entries: Iterable[dict]) -> None:
        ordered = sorted(entries, key=lambda e: (e.get("datetime", ""), e["file"]))
        text = json.dumps(_document(ordered), indent=1)
        write_atomic(self._md_path(day), text.encode())


def _document(images: list[dict]) -> dict:
    return {
        "info": {
            "format_version": FORMAT_VERSION,
            "detector": DETECTOR,
            "detection_completion_time": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "detector_metadata": {"typical_detection_threshold": TYPICAL_THRESHOLD,
                                  "conservative_detection_threshold": TYPICAL_THRESHOLD},
            "wildlink": "file paths are relative to the base station's out_dir; boxes the trap's "
                        "saliency found are in images[].wildlink.regions, not detections",
        },
        "detection_categories": dict(DETECTION_CATEGORIES),
        "images": images,
    }


def _day(row: dict) -> str:
    """The capture day (UTC) a row belongs to; its receive day when the capture time is unknown."""
    return (row["capture_time"] or row["received_at"] or _iso(time.time()))[:10]


def _bbox_text(bbox) -> str:
    return " ".join(f"{float(v):.4f}" for v in bbox)


def _blank(value):
    return "" if value is None else value


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
