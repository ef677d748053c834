"""`kezek keys data-key KID`: a new data key for KEZEK_DATA_KEYS (personal
data at rest, kezek/sealing.py), printed as `KID:key`.

`kezek keys generate DIR [--caller NAME ...]`: a new Ed25519 key for each
caller (every service and the `cli`), written as DIR/<caller>.pem, and its
public key added to DIR/jwks.json beside the old ones. To rotate: generate,
give every process the new jwks.json, then each service its new .pem; drop
the old public keys from jwks.json once no token signed with them can be
alive (a minute)."""
from __future__ import annotations

import argparse
from pathlib import Path

from kezek.sealing import KeyringError, new_key_line
from kezek.trust import CALLERS, generate_folder


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="kezek keys", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="verb", required=True)
    gen = sub.add_parser("generate", help="write new keys into a folder")
    gen.add_argument("folder", type=Path)
    gen.add_argument("--caller", action="append", choices=CALLERS,
                     help="only this caller (repeatable); default: all")
    data = sub.add_parser("data-key", help="print a new data key (KID:key) for KEZEK_DATA_KEYS")
    data.add_argument("kid", help="its name, e.g. the year and a letter: 2027a")
    args = p.parse_args(argv)
    if args.verb == "data-key":
        try:
            print(new_key_line(args.kid))
        except KeyringError as exc:
            p.error(str(exc))
        return 0
    kids = generate_folder(args.folder, args.caller or CALLERS)
    for kid in kids:
        print(f"{args.folder}/{kid.split('-')[0]}.pem  kid={kid}")
    print(f"{args.folder}/jwks.json  (public keys: give it to every process)")
    return 0
