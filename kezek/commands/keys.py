"""`kezek keys generate DIR [--caller NAME ...]`: a new Ed25519 key for each
caller (every service and the `cli`), written as DIR/<caller>.pem, and its
public key added to DIR/jwks.json beside the old ones. To rotate: generate,
give every process the new jwks.json, then each service its new .pem; drop
the old public keys from jwks.json once no token signed with them can be
alive (a minute)."""
from __future__ import annotations

import argparse
from pathlib import Path

from kezek.trust import CALLERS, generate_folder


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="kezek keys", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="verb", required=True)
    gen = sub.add_parser("generate", help="write new keys into a folder")
    gen.add_argument("folder", type=Path)
    gen.add_argument("--caller", action="append", choices=CALLERS,
                     help="only this caller (repeatable); default: all")
    args = p.parse_args(argv)
    kids = generate_folder(args.folder, args.caller or CALLERS)
    for kid in kids:
        print(f"{args.folder}/{kid.split('-')[0]}.pem  kid={kid}")
    print(f"{args.folder}/jwks.json  (public keys: give it to every process)")
    return 0
