"""`wildlink radio` and the radio spec factory, on emulated radios."""

from __future__ import annotations

import threading

import pytest
from emulators.e22 import E22Air, EmulatedE22
from emulators.sx1262 import Air, EmulatedSX1262, emulated_pair
from gpiozero.pins.mock import MockFactory

from device.errors import ConfigError
from device.radio.e22 import E22
from device.radio.factory import open_radio, parse_spec
from device.radio.sx1262 import SX1262, SX1262Config
from tools.cli import build_parser, main
from tools.commands import radio as cmd


def test_spec_parsing_and_errors():
    assert parse_spec("sx1262:freq=868.1, sf=7") == ("sx1262", {"freq": "868.1", "sf": "7"})
    with pytest.raises(ConfigError):
        parse_spec("sx1262:sf")
    with pytest.raises(ConfigError, match="unknown radio driver"):
        open_radio("rfm95:", pin_factory=MockFactory())
    with pytest.raises(ConfigError, match="unknown sx1262 option"):
        open_radio("sx1262:colour=blue", pin_factory=MockFactory())
    with pytest.raises(ConfigError, match="bad sx1262 radio option"):
        open_radio("sx1262:sf=seven", pin_factory=MockFactory())


def test_flags_become_a_spec():
    parser = build_parser("radio")
    args = parser.parse_args(["--frequency", "915", "--sf", "7", "--bw", "250", "--busy", "23",
                              "--tcxo", "1.8", "--module", "core1262"])
    assert cmd.spec_from_args(args) == ("sx1262", {"freq": "915.0", "sf": "7", "bw": "250.0",
                                                   "busy": "23", "tcxo": "1.8",
                                                   "module": "core1262"})
    args = parser.parse_args(["--driver", "e22", "--port", "/dev/ttyS0", "--air-rate", "4800"])
    assert cmd.spec_from_args(args) == ("e22", {"port": "/dev/ttyS0", "air_rate": "4800"})


def test_cli_errors_are_one_line(capsys, monkeypatch):
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    assert main(["radio", "--driver", "e22", "--sf", "7"]) == 2
    assert "--sf do not apply to --driver e22" in capsys.readouterr().err
    assert main(["radio", "--driver", "e22", "--port", "/dev/no-such-port", "--count", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot open serial port /dev/no-such-port" in err and "\n" not in err


def test_ping_and_echo_between_two_sx1262():
    air = Air(rssi=-80.0, snr=6.25)
    radios = []
    for _ in range(2):
        factory = MockFactory()
        chip = EmulatedSX1262(factory, air)
        # 128 symbols at SF7/500 kHz last as long as 8 at SF9/125 kHz (32.8 ms): the time a
        # real pinger has to re-arm RX before the pong's preamble is over
        radios.append(SX1262(SX1262Config(sf=7, bw_hz=500e3, preamble=128), bus=chip,
                             pin_factory=factory, busy_timeout=0.25, irq_margin=0.05))
    here, there = radios
    echoed = []
    thread = threading.Thread(target=lambda: echoed.append(cmd.echo(there, 1.0, lambda s: None)))
    thread.start()
    for _ in range(1000):  # the echo side listens (RX) before the first ping
        if air.chips[1].mode == 0x50:
            break
        threading.Event().wait(0.002)
    lines = []
    assert cmd.ping(here, 2, 2.0, lines.append) == 2
    assert "here RSSI -80.0 dBm SNR 6.2 dB; there RSSI -80.0 dBm SNR 6.2 dB" in lines[0]
    status = cmd.describe(here)
    assert "SX1261 V2D 2D02" in status[1] and "device errors none" in status[1]
    thread.join()
    assert echoed == [2]
    assert cmd.ping(here, 1, 0.1, lines.append) == 0 and "no pong" in lines[-1]
    for radio in radios:
        radio.close()
    air.close()


def test_factory_opens_an_e22_on_a_pty():
    air = E22Air()
    factory = MockFactory()
    module = EmulatedE22(factory, air)
    radio = open_radio(("e22", {"port": module.port, "freq": "869.125", "air_rate": "62500",
                                "address": "0x0102"}), pin_factory=factory)
    assert isinstance(radio, E22) and radio.config.channel == 19 and radio.config.address == 0x102
    assert "registers 00H-06H 01 02 00 67 00 13 80" in cmd.describe(radio)[1]
    radio.close()
    air.close()


def test_hil_file_transfer_logic_on_emulated_chips():
    """The HIL test's stop-and-wait file transfer, run here on emulators with lost packets."""
    from test_radio_hil import _send_file

    radios, air = emulated_pair()
    data = bytes(range(256)) * 3
    air.corrupt = 2
    assert _send_file(radios[0], radios[1], data, wait=0.3) == data
    assert radios[1].stats.crc_errors == 2
    for radio in radios:
        radio.close()
    air.close()
