"""The E22 emulator's air: data rate, airtime, half duplex and the UART line speed.

The E22-900T22S manual defines REG0 bits 2:0 as the air data rate (0.3k .. 62.5k) that both
ends must share, and bits 7:5 as the UART baud rate of transmission mode.
"""

from __future__ import annotations

import threading
import time

import pytest
import serial
from emulators.e22 import E22Air, EmulatedE22
from gpiozero.pins.mock import MockFactory

from device.radio.e22 import AIR_RATE, E22, FRAME_OVERHEAD, E22Config


@pytest.fixture
def air():
    air = E22Air()
    yield air
    air.close()


def make(air, aux=None, **config):
    factory = MockFactory()
    module = EmulatedE22(factory, air, aux=aux)
    radio = E22(E22Config(**config), module.port, aux=aux, pin_factory=factory, mode_delay=0.005)
    return radio, module


def test_modules_at_different_air_rates_do_not_hear_each_other(air):
    a, _ = make(air, air_rate=2400)
    b, _ = make(air, air_rate=2400)
    c, _ = make(air, air_rate=19200)
    a.send(b"from a")
    assert b.receive(2.0).frame == b"from a"
    assert c.receive(0.2) is None
    c.send(b"from c")
    assert a.receive(0.2) is None and b.receive(0.2) is None
    for radio in (a, b, c):
        radio.close()


@pytest.mark.parametrize("rate", sorted(AIR_RATE))
def test_airtime_follows_the_air_rate(air, rate):
    radio, module = make(air, aux=17, air_rate=rate)
    reported = radio.send(bytes(radio.mtu))  # one full 240-byte sub-packet on the air
    (payload, used, seconds), = module.air_log
    assert reported == pytest.approx(seconds)  # what the duty-cycle scheduler is charged
    assert len(payload) == radio.mtu + FRAME_OVERHEAD == 240 and used == rate
    # LoRa at the rate's nominal bit rate, plus preamble and header: 0.8..1.5 of 8 bits / rate
    assert 0.8 <= seconds / (8 * 240 / rate) <= 1.5
    radio.close()


def test_air_packets_of_one_module_leave_one_after_another(air):
    radio, module = make(air, aux=17, air_rate=9600, sub_packet=32)
    radio.send(bytes(radio.mtu))  # 32 bytes on the UART: one air packet
    radio.send(bytes(radio.mtu))
    module_packets = module.on_air
    assert len(module.air_log) == 2 and len(module_packets) == 2
    (s1, e1), (s2, e2) = module_packets
    assert s2 >= e1 and e2 - s2 == pytest.approx(module.air_log[1][2] * air.time_scale)
    radio.close()


def test_a_module_hears_nothing_while_it_transmits(air):
    a, module_a = make(air, aux=17, air_rate=300)  # 240 bytes: 170 ms on the emulated air
    b, module_b = make(air, aux=18, air_rate=300)
    sending = threading.Thread(target=a.send, args=(bytes(a.mtu),))
    sending.start()
    for _ in range(500):
        if module_a.packets_sent:
            break
        time.sleep(0.001)
    b.send(b"during")  # on the air while a is: each is deaf to the other
    sending.join()
    assert module_b.packets_sent and module_a.packets_sent
    assert a.receive(0.2) is None and b.receive(0.2) is None
    b.send(b"after")
    assert a.receive(2.0).frame == b"after"
    for radio in (a, b):
        radio.close()


def test_bytes_at_another_line_speed_are_noise_to_the_module(air):
    module = EmulatedE22(MockFactory(), air)  # REG0 0x62: 9600 baud; M0 = M1 = 0: transmission
    with serial.serial_for_url(module.port, baudrate=19200, timeout=0.1) as port:
        port.write(b"at the wrong speed")
        port.flush()
        time.sleep(0.05)
    assert module.garbled == 18 and not module.packets_sent
    with serial.serial_for_url(module.port, baudrate=9600, timeout=0.1) as port:
        port.write(b"right")
        port.flush()
        for _ in range(500):
            if module.packets_sent:
                break
            time.sleep(0.001)
    assert module.packets_sent == [b"right"]


def test_the_driver_switches_to_the_reg0_baud_for_transmission_mode(air):
    a, module_a = make(air, air_rate=62500, uart_baud=115200)
    b, _ = make(air, air_rate=62500, uart_baud=115200)
    a.send(b"at 115200")
    assert b.receive(2.0).frame == b"at 115200" and module_a.garbled == 0
    for radio in (a, b):
        radio.close()
