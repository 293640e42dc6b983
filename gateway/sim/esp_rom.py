"""An ESP32 / ESP32-S3 ROM serial-bootloader SIMULATOR, so the real esptool can write into a simulated flash.

Not a chip: it answers esptool's requests the way Espressif documents the UART download protocol
("Serial Protocol" page of the esptool docs) and the way esptool v5 reads the answers, over a TCP socket
that esptool opens as ``--port socket://127.0.0.1:<port>`` (pyserial's socket URL handler).

What it models:

* **SLIP framing and packets**: requests ``00 cmd size(2) checksum(4) data``, responses
  ``01 cmd size(2) value(4) data`` ending in status bytes: four for the ROM loader (status, error, two
  reserved), two for the flasher stub. The XOR checksum (seed 0xEF) of the ``*_DATA`` payloads is checked.
* **ROM loader**: SYNC (eight answers with a non-zero value), READ_REG / WRITE_REG on a register file
  holding the chip-detect magic word (ESP32), eFuse words (package, chip revision, base MAC, no security
  features), the UART clock divider and the SPI flash controller; GET_SECURITY_INFO with the chip ID
  (ESP32-S3; the ESP32 ROM does not know the command and answers "invalid message", error 0x05);
  SPI_ATTACH, SPI_SET_PARAMS, CHANGE_BAUDRATE; FLASH_BEGIN/DATA/END (the ROM erases the whole region at
  BEGIN), FLASH_DEFL_BEGIN/DATA/END (zlib stream, what esptool sends by default), SPI_FLASH_MD5 (32 hex
  digits); MEM_BEGIN/MEM_DATA/MEM_END (RAM download).
* **Flasher stub**: esptool uploads its stub with MEM_BEGIN/MEM_DATA/MEM_END. The simulator stores the
  segments but does NOT run them: when MEM_END names an entry point inside an uploaded segment, it sends
  the stub's unsolicited ``OHAI`` packet and from then on speaks the stub's dialect (two status bytes,
  SYNC value 0, raw 16-byte MD5, erase-as-you-write, ERASE_FLASH, ERASE_REGION, stub error codes 0xC*,
  0xFF for an unknown command). Commands the ROM does not know (ERASE_FLASH, ERASE_REGION) fail with 0x05
  before the stub runs.
* **SPI flash**: JEDEC read-ID (0x9F) and SFDP (0x5A) through the SPI controller's user-command
  registers (how esptool detects the flash size and checks the flash answers); the flash itself is a
  ``bytearray`` of the chip's size filled with 0xFF, erased in 4 KB sectors, and programmed the way NOR
  flash is (a write can only clear bits: ``old & new``), so a write over unerased data shows.

One chip model per simulator instance: ``EspRomSimulator("esp32")`` (ESP32-D0WD-V3, 4 MB) or
``EspRomSimulator("esp32s3")`` (ESP32-S3FN8 as on the Heltec V3, 8 MB embedded flash). esptool started
with the wrong ``--chip`` fails the way it fails against real silicon ("This chip is ESP32, not ESP32-S3").

What it does NOT model: the DTR/RTS reset lines (esptool cannot drive them over a socket, so each new TCP
connection stands for a chip reset into download mode; the flash keeps its contents), baud rates and
line noise, real flash timing (erase and write are instant), flash encryption and secure boot, the stub's
READ_FLASH and NAND commands, and executing anything: an image written to the simulated flash never boots.

Fault injection: ``download_mode=False`` (the chip runs its app and never answers, like a board whose BOOT
button was not held), ``write_protected=True`` (programming leaves the flash erased, like a flash chip with
its status-register protection bits set). For tests and the bench only, never for production.
"""

from __future__ import annotations

import hashlib
import socket
import struct
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

__all__ = ["CHIPS", "ChipModel", "EspRomSimulator", "SimFlash", "serve"]

_SECTOR = 0x1000  # SPI NOR erase unit (esptool FLASH_SECTOR_SIZE)

# Command bytes (esptool docs, "Serial Protocol", Commands).
_FLASH_BEGIN, _FLASH_DATA, _FLASH_END = 0x02, 0x03, 0x04
_MEM_BEGIN, _MEM_END, _MEM_DATA = 0x05, 0x06, 0x07
_SYNC, _WRITE_REG, _READ_REG = 0x08, 0x09, 0x0A
_SPI_SET_PARAMS, _SPI_ATTACH, _CHANGE_BAUDRATE = 0x0B, 0x0D, 0x0F
_FLASH_DEFL_BEGIN, _FLASH_DEFL_DATA, _FLASH_DEFL_END = 0x10, 0x11, 0x12
_SPI_FLASH_MD5, _GET_SECURITY_INFO = 0x13, 0x14
_ERASE_FLASH, _ERASE_REGION = 0xD0, 0xD1

# ROM loader error codes (Serial Protocol, "ROM Loader Errors").
_ROM_INVALID = 0x05  # received message is invalid (parameters or length)
_ROM_FAILED = 0x06  # failed to act on received message
_ROM_BAD_CRC = 0x07
_ROM_DEFLATE = 0x0B
# Flasher stub error codes (stub_flasher.h, as esptool's util.py names them).
_STUB_BAD_LEN, _STUB_BAD_CHECKSUM, _STUB_BAD_BLOCKSIZE = 0xC0, 0xC1, 0xC2
_STUB_SPI_FAILED, _STUB_NOT_IN_FLASH_MODE, _STUB_INFLATE = 0xC4, 0xC6, 0xC7
_STUB_TOO_MUCH_DATA, _STUB_NOT_IMPLEMENTED = 0xC9, 0xFF

_OHAI = b"OHAI"  # the stub's greeting, the only unsolicited packet (Serial Protocol, Initial Synchronisation)

# SPI controller user-command bits (SPI_CMD_REG / SPI_USER_REG), as esptool's run_spiflash_command uses them.
_SPI_CMD_USR = 1 << 18
_SPI_USR_ADDR, _SPI_USR_MISO = 1 << 30, 1 << 28


@dataclass(frozen=True)
class ChipModel:
    """What one chip model answers: its registers, SPI controller layout, flash chip and loader quirks."""

    name: str  # esptool --chip
    title: str  # what esptool prints as "Chip type"
    flash_size: int  # bytes
    flash_id: int  # JEDEC RDID as SPI W0 holds it: manufacturer | memory type << 8 | capacity << 16
    registers: dict[int, int]  # READ_REG answers; anything else reads 0
    spi_base: int
    spi_offsets: dict[str, int]  # usr, usr1, usr2, miso_dlen, w0 (the SPI1 controller, "SPIMEM1" on S3)
    spi_addr_msb: bool  # the ESP32 shifts a 24-bit address into the top of SPI_ADDR_REG
    security_info: bytes | None  # GET_SECURITY_INFO payload; None: the ROM does not know the command
    rom_begin_words: int  # FLASH_BEGIN / FLASH_DEFL_BEGIN words the ROM takes (ESP32: 4, later chips: 5)


def _sfdp_table(manufacturer: int) -> bytes:
    """A minimal JESD216 SFDP header: signature, revision, one basic and one vendor parameter header."""
    header = b"SFDP" + bytes([0x06, 0x01, 0x01, 0xFF])
    basic = bytes([0x00, 0x06, 0x01, 0x10, 0x30, 0x00, 0x00, 0xFF])
    vendor = bytes([manufacturer, 0x00, 0x01, 0x03, 0x60, 0x00, 0x00, 0xFF])
    return header + basic + vendor


# ESP32 (ESP32-D0WD-V3, revision v3.0, as on the TTGO LoRa32 V2.1 and T-Beam), eFuse block 0 at 0x3FF5A000.
# Word 3: package 1 (D0WD) in bits 9-11, revision bit 0 in bit 15; word 5: revision bit 1 in bit 20
# (SPI pad eFuses zero: default flash pins); APB_CTL_DATE bit 31 is revision bit 2: together revision 3.
# Words 1-2 hold the base MAC: a locally administered placeholder, never a real device's.
_ESP32_EFUSE = 0x3FF5A000
_ESP32 = ChipModel(
    name="esp32",
    title="ESP32-D0WD-V3 (revision v3.0)",
    flash_size=4 * 1024 * 1024,
    flash_id=0x1640C8,  # GigaDevice GD25Q32 (C8 40 16): capacity 0x16 = 4 MB
    registers={
        0x40001000: 0x00F01D83,  # chip-detect magic word (esptool ESP32ROM.MAGIC_VALUE)
        _ESP32_EFUSE + 4 * 1: 0x00000001,  # MAC bytes 2-5 (02:00:00:00:00:01)
        _ESP32_EFUSE + 4 * 2: 0x00000200,  # MAC bytes 0-1 below a zero CRC byte
        _ESP32_EFUSE + 4 * 3: (1 << 9) | (1 << 15),
        _ESP32_EFUSE + 4 * 4: 100,  # CK8M frequency calibration byte
        _ESP32_EFUSE + 4 * 5: 1 << 20,
        0x3FF6607C: 0x80000000 | 0x16042000,  # APB_CTL_DATE
        0x3FF40014: 347,  # UART_CLKDIV: 40 MHz APB / 115200 Bd
        0x3FF5F06C: 1024 << 7,  # RTCCALICFG1: with CK8M 100 the ROM-calculated crystal is 40 MHz
    },
    spi_base=0x3FF42000,
    spi_offsets={"usr": 0x1C, "usr1": 0x20, "usr2": 0x24, "miso_dlen": 0x2C, "w0": 0x80},
    spi_addr_msb=True,
    security_info=None,
    rom_begin_words=4,
)

# ESP32-S3 (ESP32-S3FN8, revision v0.2, 8 MB embedded XMC flash, as on the Heltec WiFi LoRa 32 V3).
# eFuse BLOCK1 at 0x60007044: words 0-1 MAC, word 3 minor revision (bits 18-20), block minor version
# (24-26), flash capacity 1 = 8 MB (27-29); word 4 flash vendor 1 = XMC (0-2).
_S3_BLOCK1 = 0x60007044
_ESP32S3 = ChipModel(
    name="esp32s3",
    title="ESP32-S3 (QFN56) (revision v0.2)",
    flash_size=8 * 1024 * 1024,
    flash_id=0x174020,  # XMC XM25QH64C (20 40 17): capacity 0x17 = 8 MB
    registers={
        _S3_BLOCK1 + 4 * 0: 0x00000001,  # MAC bytes 2-5 (02:00:00:00:00:01)
        _S3_BLOCK1 + 4 * 1: 0x00000200,  # MAC bytes 0-1
        _S3_BLOCK1 + 4 * 3: (2 << 18) | (1 << 24) | (1 << 27),
        _S3_BLOCK1 + 4 * 4: 1,
        0x60000014: 347,  # UART_CLKDIV
    },
    spi_base=0x60002000,
    spi_offsets={"usr": 0x18, "usr1": 0x1C, "usr2": 0x20, "miso_dlen": 0x28, "w0": 0x58},
    spi_addr_msb=False,
    # flags, flash_crypt_cnt, 7 key purposes, chip ID 9 (ESP32-S3 image chip ID), ECO version 0
    security_info=struct.pack("<IB7BII", 0, 0, *([0] * 7), 9, 0),
    rom_begin_words=5,
)

CHIPS: dict[str, ChipModel] = {chip.name: chip for chip in (_ESP32, _ESP32S3)}


class SimFlash:
    """A SPI NOR flash: erased bytes are 0xFF, programming clears bits only, erase works in 4 KB sectors."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.data = bytearray(b"\xff" * size)
        self.write_protected = False

    def erase(self, offset: int, length: int) -> None:
        """Erase every sector that [offset, offset+length) touches."""
        start = offset - offset % _SECTOR
        end = min(self.size, -(-(offset + length) // _SECTOR) * _SECTOR)
        if self.write_protected:
            return
        self.data[start:end] = b"\xff" * (end - start)

    def erase_all(self) -> None:
        self.erase(0, self.size)

    def program(self, offset: int, chunk: bytes) -> None:
        """Page-program ``chunk`` at ``offset``: each bit can go from 1 to 0 only (NOR flash)."""
        if self.write_protected:
            return
        end = offset + len(chunk)
        merged = int.from_bytes(self.data[offset:end], "big") & int.from_bytes(chunk, "big")
        self.data[offset:end] = merged.to_bytes(len(chunk), "big")

    def md5(self, offset: int, length: int) -> bytes:
        return hashlib.md5(self.data[offset:offset + length]).digest()


class _Fail(Exception):
    """A request the loader refuses: answered with status 1 and this error code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _slip(packet: bytes) -> bytes:
    return b"\xc0" + packet.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc") + b"\xc0"


def _checksum(data: bytes) -> int:
    state = 0xEF
    for b in data:
        state ^= b
    return state


@dataclass
class _FlashWrite:
    """One FLASH_BEGIN / FLASH_DEFL_BEGIN session."""

    offset: int
    size: int  # bytes to be written (ROM: rounded up to whole blocks)
    blocks: int
    block_size: int
    compressed: bool
    next_seq: int = 0
    written: int = 0
    inflater: Any = None  # zlib decompressor of a FLASH_DEFL session
    erased_to: int = 0  # the stub erases sectors just before it writes into them


@dataclass
class _MemLoad:
    """One MEM_BEGIN session: a segment being downloaded to RAM."""

    address: int
    size: int
    blocks: int
    block_size: int
    data: bytearray = field(default_factory=bytearray)
    next_seq: int = 0


class _Session:
    """One esptool connection: starts in the ROM loader (the chip just came out of reset into download mode)."""

    def __init__(self, sim: EspRomSimulator, send: Callable[[bytes], None]) -> None:
        self.sim, self.chip, self.flash = sim, sim.chip, sim.flash
        self.send = send
        self.stub = False
        self.op = 0  # the command being handled
        self.silent = False  # the loader left for user code (or a crashed jump): nothing answers any more
        self.registers = dict(self.chip.registers)
        self.segments: list[tuple[int, bytes]] = []
        self.mem: _MemLoad | None = None
        self.write: _FlashWrite | None = None
        self.flash_limit = self.flash.size  # what SPI_SET_PARAMS said, capped by the real chip

    # ---- framing ----

    def answer(self, op: int, value: int = 0, data: bytes = b"", error: int | None = None) -> None:
        status = bytes([0, 0]) if error is None else bytes([1, error])
        if not self.stub:
            status += b"\x00\x00"  # the ROM sends two reserved status bytes (Serial Protocol, Status bytes)
        body = (data if error is None else b"") + status
        self.send(_slip(struct.pack("<BBHI", 0x01, op, len(body), value) + body))

    def handle(self, packet: bytes) -> None:
        if self.silent or len(packet) < 8 or packet[0] != 0x00:
            return  # not a request (the ROM ignores what it cannot parse)
        op, size, chk = struct.unpack_from("<BHI", packet, 1)
        data = packet[8:]
        self.op = op
        self.sim.log.append((("stub" if self.stub else "rom"), op))
        if size != len(data):
            self.answer(op, error=_STUB_BAD_LEN if self.stub else _ROM_INVALID)
            return
        handler = self._handlers().get(op)
        if handler is None:
            self.answer(op, error=_STUB_NOT_IMPLEMENTED if self.stub else _ROM_INVALID)
            return
        try:
            result = handler(data, chk)
        except _Fail as fail:
            self.answer(op, error=fail.code)
            return
        if result is not None:  # handlers that answer themselves return None
            value, payload = result
            self.answer(op, value, payload)

    def _handlers(self) -> dict[int, Callable[[bytes, int], tuple[int, bytes] | None]]:
        table: dict[int, Callable[[bytes, int], tuple[int, bytes] | None]] = {
            _SYNC: self._sync,
            _READ_REG: self._read_reg,
            _WRITE_REG: self._write_reg,
            _SPI_SET_PARAMS: self._spi_set_params,
            _SPI_ATTACH: self._spi_attach,
            _CHANGE_BAUDRATE: self._change_baudrate,
            _MEM_BEGIN: self._mem_begin,
            _MEM_DATA: self._mem_data,
            _MEM_END: self._mem_end,
            _FLASH_BEGIN: self._flash_begin,
            _FLASH_DATA: self._flash_data,
            _FLASH_END: self._flash_end,
            _FLASH_DEFL_BEGIN: self._flash_begin,
            _FLASH_DEFL_DATA: self._flash_data,
            _FLASH_DEFL_END: self._flash_end,
            _SPI_FLASH_MD5: self._md5,
        }
        if self.chip.security_info is not None:
            table[_GET_SECURITY_INFO] = self._security_info
        if self.stub:
            table[_ERASE_FLASH] = self._erase_flash
            table[_ERASE_REGION] = self._erase_region
        return table

    def _bad(self) -> _Fail:
        return _Fail(_STUB_BAD_LEN if self.stub else _ROM_INVALID)

    def _words(self, data: bytes, count: int) -> tuple[int, ...]:
        if len(data) < 4 * count:
            raise self._bad()
        return struct.unpack_from(f"<{count}I", data)

    # ---- commands ----

    def _sync(self, data: bytes, _chk: int) -> None:
        if data != b"\x07\x07\x12\x20" + b"\x55" * 32:
            raise self._bad()
        # The ROM answers a SYNC eight times with a non-zero value (esptool reads them all and treats a
        # zero value as "the stub is already running"); 0x20120707 is the sim's choice of non-zero value.
        value = 0 if self.stub else 0x20120707
        for _ in range(8):
            self.answer(_SYNC, value)

    def _read_reg(self, data: bytes, _chk: int) -> tuple[int, bytes]:
        (address,) = self._words(data, 1)
        return self.registers.get(address, 0), b""

    def _write_reg(self, data: bytes, _chk: int) -> tuple[int, bytes]:
        if not data or len(data) % 16:
            raise self._bad()
        for address, value, mask, _delay_us in struct.iter_unpack("<IIII", data):
            old = self.registers.get(address, 0)
            self.registers[address] = (old & ~mask) | (value & mask)
            if address == self.chip.spi_base and value & _SPI_CMD_USR:
                self._spi_user_command()
        return 0, b""

    def _spi_reg(self, name: str) -> int:
        return self.registers.get(self.chip.spi_base + self.chip.spi_offsets[name], 0)

    def _spi_user_command(self) -> None:
        """Run the SPI flash command esptool set up in the controller registers (RDID, SFDP, RDSR...)."""
        command = self._spi_reg("usr2") & 0xFF
        usr = self._spi_reg("usr")
        address = self.registers.get(self.chip.spi_base + 0x04, 0)
        if usr & _SPI_USR_ADDR and self.chip.spi_addr_msb:
            address >>= 32 - (((self._spi_reg("usr1") >> 26) & 0x3F) + 1)
        if command == 0x9F:  # JEDEC read identification
            result = self.chip.flash_id
        elif command == 0x5A:  # read SFDP (JESD216)
            table = _sfdp_table(self.chip.flash_id & 0xFF)
            result = int.from_bytes(table[address:address + 4].ljust(4, b"\xff"), "little")
        else:  # status registers read 0 (no protection bits, not busy); reset, power-down: no-ops
            result = 0
        if usr & _SPI_USR_MISO:
            bits = (self._spi_reg("miso_dlen") & 0xFFFFFF) + 1
            result &= (1 << min(bits, 32)) - 1
            self.registers[self.chip.spi_base + self.chip.spi_offsets["w0"]] = result
        self.registers[self.chip.spi_base] &= ~_SPI_CMD_USR  # the controller clears USR when done

    def _spi_set_params(self, data: bytes, _chk: int) -> tuple[int, bytes]:
        _id, total, _block, sector, _page, _mask = self._words(data, 6)
        if sector != _SECTOR or total == 0:
            raise self._bad()
        self.flash_limit = min(total, self.flash.size)
        return 0, b""

    def _spi_attach(self, data: bytes, _chk: int) -> tuple[int, bytes]:
        # The ROM takes the pin word plus a 4-byte "is legacy" word; the stub only the pin word.
        if len(data) != (4 if self.stub else 8):
            raise self._bad()
        return 0, b""

    def _change_baudrate(self, data: bytes, _chk: int) -> tuple[int, bytes]:
        new, _old = self._words(data, 2)
        self.sim.baud_rate = new  # nothing to retime on a socket; recorded for tests
        return 0, b""

    def _security_info(self, data: bytes, _chk: int) -> tuple[int, bytes]:
        assert self.chip.security_info is not None
        return 0, self.chip.security_info

    def _mem_begin(self, data: bytes, _chk: int) -> tuple[int, bytes]:
        size, blocks, block_size, address = self._words(data, 4)
        if blocks * block_size < size:
            raise self._bad()
        self.mem = _MemLoad(address, size, blocks, block_size)
        return 0, b""

    def _data_block(self, data: bytes, chk: int, seq_expected: int, block_size: int) -> bytes:
        length, seq, _z1, _z2 = self._words(data, 4)
        block = data[16:]
        if length != len(block) or length > block_size or seq != seq_expected:
            raise _Fail(_STUB_BAD_BLOCKSIZE if self.stub else _ROM_INVALID)
        if _checksum(block) != chk & 0xFF:
            raise _Fail(_STUB_BAD_CHECKSUM if self.stub else _ROM_BAD_CRC)
        return block

    def _mem_data(self, data: bytes, chk: int) -> tuple[int, bytes]:
        if self.mem is None:
            raise _Fail(_STUB_NOT_IN_FLASH_MODE if self.stub else _ROM_FAILED)
        block = self._data_block(data, chk, self.mem.next_seq, self.mem.block_size)
        self.mem.data += block
        self.mem.next_seq += 1
        if len(self.mem.data) >= self.mem.size:
            self.segments.append((self.mem.address, bytes(self.mem.data[: self.mem.size])))
        return 0, b""

    def _mem_end(self, data: bytes, _chk: int) -> None:
        no_jump, entry = self._words(data, 2)
        self.answer(_MEM_END)
        self.mem = None
        if no_jump:
            return
        if any(start <= entry < start + len(seg) for start, seg in self.segments):
            # The uploaded code is esptool's flasher stub: the sim does not execute it, it becomes it.
            self.stub = True
            self.sim.stub_uploads += 1
            self.send(_slip(_OHAI))
        else:
            self.silent = True  # a jump into nothing: a real chip would crash and reset

    def _flash_begin(self, data: bytes, _chk: int) -> tuple[int, bytes]:
        words = 5 if self.stub else self.chip.rom_begin_words
        if len(data) != 4 * words:
            raise self._bad()
        size, blocks, block_size, offset = self._words(data, 4)[:4]
        if words == 5 and self._words(data, 5)[4]:
            raise self._bad()  # encrypted writes are not modelled
        if offset % _SECTOR and not self.stub:
            raise self._bad()
        if offset + size > self.flash_limit:
            # Past the end of the flash: the sim's choice of refusal (esptool checks the size first).
            raise _Fail(_STUB_SPI_FAILED if self.stub else _ROM_FAILED)
        self.write = _FlashWrite(offset, size, blocks, block_size, self.op == _FLASH_DEFL_BEGIN)
        if self.write.compressed:
            self.write.inflater = zlib.decompressobj()
        if not self.stub:
            self.flash.erase(offset, size)  # the ROM erases the whole region up front
            self.write.erased_to = offset + size
        else:
            self.write.erased_to = offset
        return 0, b""

    def _flash_data(self, data: bytes, chk: int) -> tuple[int, bytes]:
        w = self.write
        compressed = self.op == _FLASH_DEFL_DATA
        if w is None or w.compressed != compressed:
            raise _Fail(_STUB_NOT_IN_FLASH_MODE if self.stub else _ROM_FAILED)
        block = self._data_block(data, chk, w.next_seq, w.block_size)
        if compressed:
            try:
                chunk = w.inflater.decompress(block)
            except zlib.error as exc:
                raise _Fail(_STUB_INFLATE if self.stub else _ROM_DEFLATE) from exc
        else:
            chunk = block
        if w.written + len(chunk) > w.size:
            if compressed:
                raise _Fail(_STUB_TOO_MUCH_DATA if self.stub else _ROM_DEFLATE)
            # esptool pads the last uncompressed block with 0xFF to the block size; only the announced
            # size is written (for the ROM that is whole blocks anyway)
            chunk = chunk[: w.size - w.written]
        start = w.offset + w.written
        if self.stub and start + len(chunk) > w.erased_to:  # just-in-time erase, sector by sector
            self.flash.erase(w.erased_to, start + len(chunk) - w.erased_to)
            w.erased_to = -(-(start + len(chunk)) // _SECTOR) * _SECTOR
        self.flash.program(start, chunk)
        w.written += len(chunk)
        w.next_seq += 1
        return 0, b""

    def _flash_end(self, data: bytes, _chk: int) -> None:
        (run_user_code,) = self._words(data, 1)
        self.answer(self.op)
        self.write = None
        if not run_user_code:  # reboot: GPIO0 still strapped low, so the ROM loader starts again
            self.stub = False
            self.registers = dict(self.chip.registers)
        elif not self.stub:  # the ROM leaves the loader and runs the application: no more answers
            self.silent = True
        # the stub with 1 only closes the write session and stays

    def _md5(self, data: bytes, _chk: int) -> tuple[int, bytes]:
        address, size, _z1, _z2 = self._words(data, 4)
        if address + size > self.flash.size:
            raise _Fail(_STUB_SPI_FAILED if self.stub else _ROM_FAILED)
        digest = self.flash.md5(address, size)
        return 0, (digest if self.stub else digest.hex().encode())

    def _erase_flash(self, data: bytes, _chk: int) -> tuple[int, bytes]:
        self.flash.erase_all()
        return 0, b""

    def _erase_region(self, data: bytes, _chk: int) -> tuple[int, bytes]:
        offset, size = self._words(data, 2)
        if offset % _SECTOR or size % _SECTOR or offset + size > self.flash.size:
            raise _Fail(_STUB_BAD_LEN)
        self.flash.erase(offset, size)
        return 0, b""


class EspRomSimulator:
    """Run with ``with EspRomSimulator("esp32") as sim:``; esptool's port is ``sim.url``.

    A thread accepts one connection at a time (a serial port has one user), so esptool can run as a
    subprocess while the test holds ``sim.flash``. Synchronous on purpose: the code under test runs
    esptool with a blocking ``subprocess.run``.
    """

    def __init__(
        self,
        chip: str = "esp32",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        download_mode: bool = True,
        write_protected: bool = False,
    ) -> None:
        if chip not in CHIPS:
            raise ValueError(f"chip {chip!r}: the simulator models {', '.join(sorted(CHIPS))}")
        self.chip = CHIPS[chip]
        self.flash = SimFlash(self.chip.flash_size)
        self.flash.write_protected = write_protected
        self.download_mode = download_mode
        self.host, self.port = host, port
        self.log: list[tuple[str, int]] = []  # (loader, command byte) of every request, for tests
        self.connections = 0
        self.stub_uploads = 0
        self.baud_rate = 115200
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def url(self) -> str:
        """The pyserial URL to pass to esptool's ``--port``."""
        return f"socket://{self.host}:{self.port}"

    def commands(self, loader: str | None = None) -> set[int]:
        """Command bytes received (optionally only those the ``"rom"`` or ``"stub"`` loader handled)."""
        return {op for who, op in self.log if loader in (None, who)}

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        listener = socket.create_server((self.host, self.port))
        listener.settimeout(0.2)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name="esp-rom-sim", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
        self._thread = self._listener = None

    def _serve(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            with conn:
                self._run_connection(conn)

    def _run_connection(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        session = _Session(self, conn.sendall)
        buffer = bytearray()
        frame: bytearray | None = None
        escaped = False
        while not self._stop.is_set():
            try:
                received = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not received:
                return  # esptool closed the port
            if not self.download_mode:
                continue  # the app runs; nothing here speaks the loader protocol
            buffer += received
            for byte in bytes(buffer):
                if frame is None:
                    if byte == 0xC0:
                        frame = bytearray()
                    continue  # noise between frames is ignored
                if escaped:
                    frame.append({0xDC: 0xC0, 0xDD: 0xDB}.get(byte, byte))
                    escaped = False
                elif byte == 0xDB:
                    escaped = True
                elif byte == 0xC0:
                    if frame:
                        try:
                            session.handle(bytes(frame))
                        except OSError:
                            return
                        frame = None
                    # an empty frame (C0 C0) is a packet boundary: keep waiting for the body
                else:
                    frame.append(byte)
            buffer.clear()


def serve(chip: str = "esp32", port: int = 5555) -> None:
    """Run a simulator until Ctrl-C (manual use: ``esptool --chip esp32 --port socket://127.0.0.1:5555 ...``)."""
    with EspRomSimulator(chip, port=port) as sim:
        print(f"{sim.chip.title} ROM loader simulator on {sim.url} (not a chip)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":  # python -m gateway.sim.esp_rom [esp32|esp32s3] [port]
    import sys

    serve(sys.argv[1] if len(sys.argv) > 1 else "esp32", int(sys.argv[2]) if len(sys.argv) > 2 else 5555)
