"""`wildlink keys`: make trap keys, collect them in a base station's key file, list them.

Every trap signs its frames with its own 16-byte key (device/link/auth.py); the base station
holds the keys of all its traps. A trap's file carries only its own key, so a stolen trap gives
away one key, not the network's::

    wildlink keys new 3 --base keys-base.toml      # keys-trap3.toml, and adds it to the base's
    wildlink keys add keys-base.toml keys-trap4.toml
    wildlink keys list keys-base.toml keys-trap3.toml

Files are written with mode 0600; keys are never printed, only an 8-hex fingerprint
(the first 4 bytes of the key's SHA-256), so two files can be compared by eye.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import stat
from pathlib import Path

from tools.errors import UserError


def fingerprint(key: bytes) -> str:
    """8 hex digits that identify a key without revealing it."""
    return hashlib.sha256(bytes(key)).hexdigest()[:8]


def trap_file_name(trap_id: int) -> str:
    return f"keys-trap{trap_id}.toml"


def read_keys(path: Path) -> dict[int, bytes]:
    """A key file's `{trap_id: key}`; refuses a file others may read (one-line errors)."""
    from device.link.auth import load_keys

    return load_keys(path)


def new_trap_key(trap_id: int, out: Path, force: bool = False) -> bytes:
    """Write a fresh random key for `trap_id` to `out` (mode 0600) and return it."""
    from device.link.auth import write_keys
    from device.trapid import check_trap_id

    check_trap_id(trap_id, error=UserError)
    if out.exists() and not force:
        raise UserError(f"{out} exists; use it as it is, or pass --force to replace its key "
                        "(the trap and its base then both need the new file)")
    key = os.urandom(16)
    write_keys(out, {trap_id: key})
    return key


def add_to_base(base: Path, keys: dict[int, bytes], force: bool = False) -> dict[int, bytes]:
    """Merge `keys` into the base station's key file (created if missing); returns all of it.

    A trap id already there with another key is refused unless `force`: replacing it would
    silently cut off the trap that still has the old key.
    """
    from device.link.auth import write_keys

    merged = read_keys(base) if base.exists() else {}
    clash = [t for t, k in keys.items() if t in merged and merged[t] != k]
    if clash and not force:
        names = ", ".join(str(t) for t in sorted(clash))
        raise UserError(f"{base} already has another key for trap {names}; pass --force to "
                        "replace it (that trap then needs its new key file too)")
    merged.update(keys)
    write_keys(base, merged)
    return merged


def describe(path: Path) -> list[str]:
    """One line per key: trap id and fingerprint, after a line naming the file and its mode."""
    keys = read_keys(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    lines = [f"{path}: {len(keys)} key{'s' if len(keys) != 1 else ''}, mode {mode:04o}"]
    lines += [f"  trap {trap:3d}  {fingerprint(key)}" for trap, key in sorted(keys.items())]
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    new = sub.add_parser("new", help="a fresh key file for one trap",
                         description="Write a fresh random key for one trap (mode 0600).")
    new.add_argument("trap", type=int, metavar="TRAP_ID", help="the trap's id (trap.id, 0..255)")
    new.add_argument("--out", type=Path, metavar="FILE",
                     help="trap key file to write (default: keys-trapTRAP_ID.toml)")
    new.add_argument("--base", type=Path, metavar="FILE",
                     help="also add the key to this base-station key file (created if missing)")
    new.add_argument("--force", action="store_true",
                     help="replace an existing file or an existing key for this trap")
    add = sub.add_parser("add", help="add trap key files to a base station's key file",
                         description="Merge trap key files into a base station's key file.")
    add.add_argument("base", type=Path, metavar="BASE_FILE", help="base key file (created if "
                     "missing)")
    add.add_argument("traps", type=Path, nargs="+", metavar="TRAP_FILE", help="trap key files")
    add.add_argument("--force", action="store_true", help="replace clashing keys")
    show = sub.add_parser("list", help="the trap ids and key fingerprints in key files",
                          description="List the trap ids and key fingerprints (never the keys).")
    show.add_argument("files", type=Path, nargs="+", metavar="FILE", help="key files")


def run(args: argparse.Namespace) -> int:
    if args.action == "new":
        out = args.out or Path(trap_file_name(args.trap))
        key = new_trap_key(args.trap, out, args.force)
        print(f"trap {args.trap}: new key {fingerprint(key)} in {out} (mode 0600)")
        if args.base is not None:
            merged = add_to_base(args.base, {args.trap: key}, args.force)
            print(f"added to {args.base} (traps {', '.join(str(t) for t in sorted(merged))})")
        else:
            print(f"give the base station this key too: wildlink keys add BASE_FILE {out}")
        return 0
    if args.action == "add":
        keys: dict[int, bytes] = {}
        for path in args.traps:
            for trap, key in read_keys(path).items():
                if trap in keys and keys[trap] != key:
                    raise UserError(f"trap {trap} has two different keys among the trap files")
                keys[trap] = key
        merged = add_to_base(args.base, keys, args.force)
        print(f"{args.base}: added trap {', '.join(str(t) for t in sorted(keys))} "
              f"(now traps {', '.join(str(t) for t in sorted(merged))})")
        return 0
    for path in args.files:
        for line in describe(path):
            print(line)
    return 0
