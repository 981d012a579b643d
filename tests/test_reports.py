"""Base-station reports: the per-day CSV index and merged MegaDetector file, EXIF in pictures."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from device.service.reports import CSV_COLUMNS, Reports, megadetector_sidecar, uplink_airtime

DEER = ([0.1, 0.2, 0.3, 0.4], 0.9412)  # a MegaDetector box the trap was given
REGION = ([0.5, 0.5, 0.1, 0.1], 0.0)  # a box from the trap's spectral saliency


@dataclass(frozen=True)
class Stored:
    """The fields of archive.StoredImage that an "image stored" hook reads."""

    trap_id: int
    image_id: int
    capture_time: float | None
    bytes: int
    status: str
    stem: str
    sidecar: Path | None = None
    rssi: float | None = -101.5
    snr: float | None = 4.25
    error: str | None = None


def _store(out: Path, trap: int, image: int, when: float, boxes, missing=(),
           parts=None) -> Stored:
    """Write a sidecar as the base service does and return what its hook receives."""
    import time

    stem = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when)) + f"-t{trap:03d}-i{image:05d}"
    sidecar = out / f"trap{trap:03d}" / f"{stem}.json"
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    info = dict(trap_id=trap, image_id=image,
                capture_time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)),
                received_at="2026-12-01T21:00:00Z", rssi=-101.5, snr=4.25, bytes=2980,
                model_id="92738ee5", missing_bands=list(missing), container=f"{stem}.wl")
    if parts is not None:
        info["parts"] = parts
    document = megadetector_sidecar(f"{stem}.png", boxes, info, when)
    sidecar.write_text(json.dumps(document))
    return Stored(trap, image, when, 2980, "partial" if missing else "decoded", stem, sidecar)


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_saliency_regions_are_not_animals_and_detections_keep_their_confidence():
    document = megadetector_sidecar("a.png", [DEER, REGION], {"trap_id": 5}, 1540187400.0)
    entry = document["images"][0]
    assert entry["detections"] == [{"category": "1", "conf": 0.941, "bbox": [0.1, 0.2, 0.3, 0.4]}]
    assert entry["wildlink"]["regions"] == [{"bbox": [0.5, 0.5, 0.1, 0.1], "source": "saliency"}]
    assert entry["datetime"] == "2018:10:22 05:50:00"  # MegaDetector's field, EXIF form
    only_regions = megadetector_sidecar("b.png", [REGION], {"trap_id": 5})["images"][0]
    assert only_regions["detections"] == [] and only_regions["max_detection_conf"] == 0.0


def test_csv_and_merged_megadetector_file_per_capture_day(tmp_path):
    reports = Reports(tmp_path, airtime=lambda n: n / 1000)
    day1 = 1540187400.0  # 2018-10-22 05:50:00
    stored = [_store(tmp_path, 5, 7, day1, [DEER, REGION]),
              _store(tmp_path, 6, 1, day1 + 60, [REGION], missing=(3, 4)),
              _store(tmp_path, 5, 8, day1 + 86400, [])]
    for s in stored:
        reports.image_stored(s)
    reports.image_stored(stored[0])  # the hook again after a restart: still one row
    rows = _csv(tmp_path / "reports" / "2018-10-22.csv")
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [(r["trap_id"], r["image_id"]) for r in rows] == [("5", "7"), ("6", "1")]
    first, second = rows
    assert first["file"] == f"trap005/{stored[0].stem}.png"
    assert first["capture_time"] == "2018-10-22T05:50:00Z"
    assert first["received_at"] == "2026-12-01T21:00:00Z"
    assert (first["detections"], first["max_conf"], first["confidences"]) == ("1", "0.941", "0.941")
    assert first["boxes"] == "0.1000 0.2000 0.3000 0.4000"
    assert first["regions"] == "0.5000 0.5000 0.1000 0.1000"
    assert (first["bytes"], first["airtime_s"]) == ("2980", "2.98")
    assert (second["status"], second["parts_missing"], second["detections"]) == ("partial", "2", "0")
    merged = json.loads((tmp_path / "reports" / "megadetector-2018-10-22.json").read_text())
    assert [e["file"] for e in merged["images"]] == [r["file"] for r in rows]
    assert [e["datetime"] for e in merged["images"]] == ["2018:10:22 05:50:00",
                                                         "2018:10:22 05:51:00"]
    assert merged["images"][1]["detections"] == []
    assert len(_csv(tmp_path / "reports" / "2018-10-23.csv")) == 1


def test_undecodable_images_get_a_row_and_rebuild_keeps_it(tmp_path):
    reports = Reports(tmp_path)
    good = _store(tmp_path, 5, 7, 1540187400.0, [DEER])
    bad = Stored(5, 9, 1540187460.0, 812, "undecodable", "20181022T055100Z-t005-i00009",
                 error="file was encoded with model 1a2b3c4d")
    reports.image_stored(good)
    reports.image_stored(bad)
    (tmp_path / "reports" / "megadetector-2018-10-22.json").unlink()
    assert reports.rebuild() == ["2018-10-22"]
    rows = _csv(tmp_path / "reports" / "2018-10-22.csv")
    assert [r["status"] for r in rows] == ["decoded", "undecodable"]
    assert rows[1]["error"].startswith("file was encoded") and rows[1]["file"] == ""
    merged = json.loads((tmp_path / "reports" / "megadetector-2018-10-22.json").read_text())
    assert [e["file"] for e in merged["images"]] == [rows[0]["file"]]  # no picture, no entry


def test_merged_file_passes_megadetectors_own_validator_and_csv_report(tmp_path):
    """With megadetector-utils installed (not a dependency), their reader takes our files."""
    validate = pytest.importorskip("megadetector.postprocessing.validate_batch_results")
    report = pytest.importorskip("megadetector.postprocessing.generate_csv_report")
    reports = Reports(tmp_path)
    for s in (_store(tmp_path, 5, 7, 1540187400.0, [DEER, REGION]),
              _store(tmp_path, 5, 8, 1540187460.0, [REGION])):
        reports.image_stored(s)
    merged = tmp_path / "reports" / "megadetector-2018-10-22.json"
    options = validate.ValidateBatchResultsOptions()
    options.check_image_existence = False
    result = validate.validate_batch_results(str(merged), options)["validation_results"]
    assert result["errors"] == [] and result["warnings"] == []
    report.generate_csv_report(str(merged), str(tmp_path / "md.csv"),
                               datetime_source=str(merged), folder_level_columns=[0],
                               verbose=False)
    rows = _csv(tmp_path / "md.csv")
    assert [r["datetime"] for r in rows] == ["2018:10:22 05:50:00", "2018:10:22 05:51:00"]
    assert [r["detection_category"] for r in rows] == ["animal", "empty"]  # a region: no animal
    assert [r["folder_level_00"] for r in rows] == ["trap005", "trap005"]


def test_csv_row_says_which_parts_arrived(tmp_path):
    reports = Reports(tmp_path)
    when = 1540187400.0
    lost = [{"kind": "region", "status": "lost", "missing_bands": [0, 1]},
            {"kind": "context", "status": "complete", "missing_bands": []}]
    whole = [{"kind": "region", "status": "complete", "missing_bands": []},
             {"kind": "context", "status": "complete", "missing_bands": []}]
    reports.image_stored(_store(tmp_path, 5, 1, when, [DEER], parts=lost))
    reports.image_stored(_store(tmp_path, 5, 2, when + 1, [DEER], parts=whole))
    reports.image_stored(_store(tmp_path, 5, 3, when + 2, [DEER], missing=(2,)))  # version 1
    rows = _csv(tmp_path / "reports" / "2018-10-22.csv")
    assert [(r["status"], r["parts"], r["parts_missing"]) for r in rows] == [
        ("partial", "region:lost;context:complete", "2"),
        ("decoded", "region:complete;context:complete", "0"),
        ("partial", "", "1")]


def test_uplink_airtime_splits_as_the_sender_does():
    from device.link import frames
    from device.radio.airtime import Modulation

    sf9 = Modulation(sf=9, bw_hz=125e3, cr=5)
    over = frames.data_overhead(signed=True)
    one = uplink_airtime(100, sf9, 255, signed=True)
    assert one == sf9.time_on_air(100 + over)
    three = uplink_airtime(2 * (255 - over) + 10, sf9, 255, signed=True)
    assert three == pytest.approx(2 * sf9.time_on_air(255) + sf9.time_on_air(10 + over))


class _Decoded:
    """What `Decoder.decode` returns, for a base test that must not run the codec: the sent
    header plus one saliency region, a region part that arrived whole and a context part
    with one band lost."""

    def __init__(self, data: bytes) -> None:
        from dataclasses import replace

        import numpy as np

        from device.codec.container import KIND_REGION, Part, QuantBox, unpack
        from device.codec.decoder import DecodedPart

        sent = unpack(data).without_streams()
        self.header = replace(sent, boxes=sent.boxes + (QuantBox(10, 10, 60, 40, 0),))
        context = sent.parts[0]
        region = Part(KIND_REGION, (100, 50, 300, 200), 200, 150, b"", ())
        self.parts = (DecodedPart(region, np.zeros((150, 200, 3), np.uint8), None, ()),
                      DecodedPart(context, np.zeros((48, 64, 3), np.uint8), None, (3,)))
        self.image = np.full((48, 64, 3), 90, np.uint8)
        self.missing_bands = (3,)
        self.incomplete = {"1:context": "partial"}


class _FakeDecoder:
    def decode(self, data: bytes) -> _Decoded:
        return _Decoded(data)


def test_base_writes_exif_csv_and_megadetector_file_for_each_image(tmp_path):
    from PIL import Image
    from service_helpers import ROOT, udp_ports, write_configs

    from device.link.store import DeliveredImage
    from device.service.adapters import BaseLink
    from device.service.base import BaseService
    from device.service.config import load_base_config

    trap_port, base_port = udp_ports()
    _, base_cfg = write_configs(tmp_path, trap_port=trap_port, base_port=base_port,
                                triggers="timelapse_s = 60")
    config = load_base_config(base_cfg)
    service = BaseService(config, decoder=_FakeDecoder())
    service.link = BaseLink.from_config(config)
    try:
        data = (ROOT / "tests" / "data" / "v1" / "missouri.wl").read_bytes()  # captured 1.7e9 s
        assert service.deliver(DeliveredImage(5, 12, data, -101.5, 4.25, 123.0))
        row = service.index.rows()[0]
    finally:
        service.link.close()
        service.index.close()
    with Image.open(row["picture"]) as im:
        exif = im.getexif()
        assert exif.get_ifd(0x8769)[0x9003] == "2023:11:14 22:13:20"  # DateTimeOriginal
        assert exif.get_ifd(0x8769)[0xA431] == "5"  # the trap id as the camera serial
    rows = _csv(config.out_dir / "reports" / "2023-11-14.csv")
    assert len(rows) == 1 and rows[0]["file"] == f"trap005/{Path(row['picture']).name}"
    assert rows[0]["capture_time"] == "2023-11-14T22:13:20Z" and rows[0]["detections"] == "1"
    assert rows[0]["confidences"] == "0.796" and rows[0]["regions"]
    # Which parts arrived (issue 13): the row and the sidecar say it, in stream order.
    assert (rows[0]["status"], rows[0]["parts"], rows[0]["parts_missing"]) == (
        "partial", "region:complete;context:partial", "1")
    assert 0 < float(rows[0]["airtime_s"]) < 30  # SF7, 2624 bytes in 11 fragments
    merged = json.loads((config.out_dir / "reports" / "megadetector-2023-11-14.json").read_text())
    entry = merged["images"][0]
    assert [d["category"] for d in entry["detections"]] == ["1"]  # the region is not an animal
    assert len(entry["wildlink"]["regions"]) == 1 and entry["datetime"] == "2023:11:14 22:13:20"
    sidecar = json.loads(Path(row["sidecar"]).read_text())["images"][0]
    assert sidecar["detections"] == entry["detections"] and sidecar["file"] == Path(
        row["picture"]).name
    assert sidecar["wildlink"]["parts"] == [
        {"kind": "region", "status": "complete", "rect": [100, 50, 300, 200],
         "coded_size": "200x150", "missing_bands": []},
        {"kind": "context", "status": "partial", "rect": [0, 0, 1024, 576],
         "coded_size": "1024x576", "missing_bands": [3]}]
    assert row["status"] == "partial"
