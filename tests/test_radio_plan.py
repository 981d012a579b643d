"""The radio plan is checked when the config loads, and the duty cycle follows the carrier the
radio really uses; a link thread that dies makes the trap service exit non-zero."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest
from service_helpers import udp_ports

from device.errors import ConfigError, LinkError
from device.link.dutycycle import REGIONS
from device.radio.clock import VirtualClock
from device.radio.e22 import E22Config, channel_for, frequency_of
from device.radio.sim import SimChannel
from device.service import adapters
from device.service.adapters import TrapLink
from device.service.config import dutycycle_for, load_trap_config
from device.service.trap import TrapService
from tools.commands import service as service_command

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
UNSIGNED = "[keys]\nallow_unsigned = true\n"


def _trap(tmp_path: Path, radio: str, name: str = "trap.toml") -> Path:
    (tmp_path / "in").mkdir(exist_ok=True)
    path = tmp_path / name
    path.write_text(f'[trap]\nid = 5\n[radio]\n{radio}\n[triggers]\nwatch_dir = "in"\n'
                    f'[storage]\ndata_dir = "{tmp_path / "trap"}"\nmin_free_mb = 0\n{UNSIGNED}')
    return path


def _error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_trap_config(path)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- item 1: the E22's channel raster and the duty cycle ------------------------------------------


def test_shipped_frequency_on_an_e22_is_refused_with_the_nearest_channels(tmp_path):
    """869.525 MHz (h1.7, 10%) is not an E22 channel: the module would use 869.125 MHz (h1.6,
    0.1%), scheduled at 10%, 100 times the legal airtime."""
    text = (DEPLOY / "trap.toml").read_text().replace('type = "sx1262"', 'type = "e22"')
    text = text.replace("tx_power_dbm = 14", "tx_power_dbm = 22")
    text = text.replace('file = "/etc/wildlink/keys.toml"', "allow_unsigned = true")
    path = tmp_path / "trap.toml"
    path.write_text(text)
    message = _error(path)
    assert message.startswith("radio.frequency_mhz: 869.525 MHz is not an E22-900 channel")
    assert "869.125 MHz (channel 19)" in message and "870.125 MHz (channel 20)" in message


@pytest.mark.parametrize(("freq", "band", "duty"), [(869.125, "h1.6", 0.001),
                                                    (868.125, "h1.5", 0.01),
                                                    (864.125, "h1.3", 0.001)])
def test_e22_is_scheduled_by_its_channel(tmp_path, freq, band, duty):
    path = _trap(tmp_path, f'type = "e22"\nfrequency_mhz = {freq}\ntx_power_dbm = 22')
    config = load_trap_config(path).radio
    assert config.frequency_mhz == freq
    dutycycle = dutycycle_for(config, VirtualClock())
    assert (dutycycle.band.name, dutycycle.duty) == (band, duty)


def test_the_duty_cycle_follows_the_radio_not_the_config(tmp_path):
    """A radio that reports its carrier (the E22 driver does) is scheduled by it."""
    config = load_trap_config(_trap(tmp_path, 'frequency_mhz = 868.125\nsf = 7')).radio

    class TunedElsewhere:
        frequency_mhz = frequency_of(19)  # what the module was really set to: 869.125 MHz

    assert dutycycle_for(config, VirtualClock()).band.name == "h1.5"
    assert dutycycle_for(config, VirtualClock(), TunedElsewhere()).band.name == "h1.6"


def test_e22_channel_limits_per_series():
    assert channel_for(930.125e6) == 80 and frequency_of(80) == 930.125
    with pytest.raises(ConfigError, match="850.125-930.125"):
        channel_for(932.125e6)  # channel 82: the 900 series ends at 80
    with pytest.raises(ConfigError, match="0..80"):
        E22Config(channel=81)
    assert E22Config(channel=83, series="400").frequency_mhz == 493.125
    # fixed-point mode transmits on the target's channel: that is the carrier to schedule
    assert E22Config(channel=18, fixed=True, target_channel=19).frequency_mhz == 869.125
    with pytest.raises(ConfigError, match="series"):
        channel_for(868.125e6, "800")
    with pytest.raises(ConfigError, match="not an E22-900 channel"):
        channel_for(868.1e6)  # the LoRaWAN channel, 25 kHz off the raster


def test_factory_spec_takes_the_series():
    from device.radio.factory import open_radio

    with pytest.raises(ConfigError, match="series"):
        open_radio("e22:series=800,freq=868.125,port=loop://")


# --- item 2: the whole plan at load time ----------------------------------------------------------


@pytest.mark.parametrize(("radio", "needle"), [
    ("frequency_mhz = 869.3", "radio.frequency_mhz: 869.3 MHz is outside every eu868 sub-band"),
    ("frequency_mhz = 915.0", "radio.frequency_mhz: 915.0 MHz is outside every eu868"),
    ('region = "us915"\nfrequency_mhz = 902.3\nsf = 12', "radio: no room for a payload"),
    ("frequency_mhz = 868.9\nsf = 12", "radio: one 255-byte frame"),
    ('type = "e22"\nfrequency_mhz = 868.125\ntx_power_dbm = 22\n[radio.e22]\naddress = 70000',
     "radio.e22.address: E22 address must be"),
    ('type = "e22"\nfrequency_mhz = 868.125\ntx_power_dbm = 22\n[radio.e22]\nseries = "800"',
     "radio.e22.series"),
])
def test_a_plan_that_could_never_send_fails_at_load(tmp_path, radio, needle):
    assert needle in _error(_trap(tmp_path, radio))


def test_the_services_pin_factory_reaches_the_radio(tmp_path):
    """A service's pin_factory opens the configured radio too (it used to stop at the PIR)."""
    from emulators.e22 import E22Air, EmulatedE22
    from gpiozero.pins.mock import MockFactory

    from device.radio.e22 import E22

    factory, air = MockFactory(), E22Air()
    module = EmulatedE22(factory, air)
    try:
        path = _trap(tmp_path, 'type = "e22"\nfrequency_mhz = 868.125\ntx_power_dbm = 22\n'
                               f'[radio.e22]\nport = "{module.port}"')
        link = TrapLink.from_config(load_trap_config(path), pin_factory=factory)
        try:
            assert isinstance(link.radio, E22) and link.radio.config.channel == 18
            assert link.dutycycle.band.name == "h1.5"
        finally:
            link.close()
    finally:
        module.close()
        air.close()


def test_the_plan_uses_the_region_tables(tmp_path):
    """Every sub-band edge of dutycycle.REGIONS loads; just outside a band does not."""
    for band in REGIONS["eu868"].bands:
        load_trap_config(_trap(tmp_path, f"frequency_mhz = {band.lo_mhz}\nsf = 7"))
        load_trap_config(_trap(tmp_path, f"frequency_mhz = {band.hi_mhz}\nsf = 7"))
    assert "sub-band" in _error(_trap(tmp_path, "frequency_mhz = 868.65\nsf = 7"))


def _service(tmp_path, **lora) -> tuple[TrapService, threading.Event]:
    config = load_trap_config(_trap(tmp_path, "sf = 7"))
    radio = config.radio
    config = replace(config, radio=replace(radio, lora=replace(radio.lora, **lora)))
    # the simulated radio tunes where the config says (a radio's own carrier has the last word)
    radio = SimChannel(VirtualClock()).radio("trap", frequency_mhz=config.radio.frequency_mhz)
    return TrapService(config, radio=radio, encoder=object()), threading.Event()


def test_a_config_built_in_code_fails_at_start_not_in_the_link_thread(tmp_path):
    service, stop = _service(tmp_path, frequency_hz=869.3e6)  # bypasses the loader
    safety = threading.Timer(30, stop.set)  # the old code ran on with a dead link thread
    safety.start()
    try:
        with pytest.raises(ConfigError, match="869.3 MHz is outside every eu868 sub-band"):
            service.run(stop)
    finally:
        safety.cancel()


def test_the_trap_exits_with_the_reason_when_the_link_thread_dies(tmp_path, monkeypatch):
    def explode(self, stop):
        raise RuntimeError("SPI bus vanished")

    monkeypatch.setattr(TrapLink, "run", explode)
    service, stop = _service(tmp_path)
    safety = threading.Timer(30, stop.set)
    safety.start()
    try:
        with pytest.raises(LinkError, match="link thread stopped .*SPI bus vanished"):
            service.run(stop)
    finally:
        safety.cancel()
    assert isinstance(service.link_error, RuntimeError)


def test_a_radio_that_keeps_failing_ends_the_link_thread(tmp_path, monkeypatch):
    """Faults are retried, but not forever: a restart re-opens and re-configures the radio."""
    from device.errors import RadioError

    monkeypatch.setattr(adapters, "LINK_RETRY_S", 0.0)
    service, stop = _service(tmp_path)
    radio = service._radio

    def broken(frame):
        raise RadioError("IRQ timeout")

    radio.send = broken
    link = TrapLink(radio, tmp_path / "q.sqlite", 5, None, service.config.radio)
    link.put(b"x" * 300, 0)
    with pytest.raises(LinkError, match=f"{adapters.MAX_LINK_ERRORS} link rounds failed"):
        link.run(stop)
    link.close()


def test_cli_exits_non_zero_when_the_link_thread_dies(tmp_path, monkeypatch, capsys):
    from tools.cli import main

    def explode(self, stop):
        raise RuntimeError("UART unplugged")

    monkeypatch.setattr(TrapLink, "run", explode)
    monkeypatch.setattr(adapters.PictureEncoder, "from_config", classmethod(lambda cls, c: None))
    monkeypatch.setattr(service_command, "_stop_on_signals", threading.Event)
    mine, peer = udp_ports()
    path = _trap(tmp_path, f"sf = 7\n[radio.sim]\nlisten_port = {mine}\npeer_port = {peer}")
    assert main(["trap", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "wildlink trap: error: the link thread stopped (UART unplugged)" in err
    assert "Traceback" not in err
