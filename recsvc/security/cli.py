"""`recsvc keys create | list | revoke`: API keys in RECSVC_KEYS_FILE (see recsvc.security.keys).

`create` prints the key once, alone on the last line of stdout (`KEY=$(recsvc keys create ...)` works);
what it made goes to stderr. Only a keyed hash of the key is stored.
"""

from __future__ import annotations

import json
import sys

from recsvc.security.keys import CHANNELS, ROLES, create_key, list_keys, revoke_key


def _where(args) -> tuple[str, str | None]:
    from recsvc.config import Config

    config = Config.from_env()
    return args.keys_file or config.keys_file, config.keys_secret


def cmd_create(args) -> int:
    path, secret = _where(args)
    channels = tuple(c.strip() for part in (args.channel or []) for c in part.split(",") if c.strip())
    rec, token = create_key(path, secret, args.role, store_id=args.store, channels=channels, name=args.name,
                            rate_limit=args.rate_limit)
    bound = "".join([f", store {rec['store_id']}" if rec["store_id"] else "",
                     f", channels {','.join(rec['channels'])}" if rec["channels"] else ""])
    print(f"recsvc keys: created {rec['role']} key {rec['id']} ({rec['name']}{bound}) in {path}; "
          "it is shown once, below, and only its keyed hash is kept", file=sys.stderr, flush=True)
    print(token, flush=True)
    return 0


def cmd_list(args) -> int:
    path, _ = _where(args)
    keys = list_keys(path)
    if args.json:
        print(json.dumps({"keys": keys}, indent=1))
        return 0
    if not keys:
        print(f"no keys in {path}")
        return 0
    rows = [("id", "name", "role", "store", "channels", "created", "revoked")]
    for k in keys:
        rows.append((k["id"], k["name"] or "", k["role"], k["store_id"] or "-", ",".join(k["channels"]) or "-",
                     k["created_at"] or "", k["revoked_at"] or "active"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def cmd_revoke(args) -> int:
    path, _ = _where(args)
    for rec in revoke_key(path, args.key):
        print(f"revoked {rec['role']} key {rec['id']} ({rec['name']}) at {rec['revoked_at']}; every worker "
              "refuses it within a second")
    return 0


def add_parser(sub) -> None:
    k = sub.add_parser("keys", help="API keys: create (printed once), list, revoke",
                       description="API keys with roles, kept as keyed hashes in RECSVC_KEYS_FILE.")
    ks = k.add_subparsers(dest="keys_command", required=True)
    c = ks.add_parser("create", help="make a key; prints it once as the last line of stdout")
    c.add_argument("--role", required=True, choices=ROLES)
    c.add_argument("--store", help="store the key is bound to (required for clerk keys)")
    c.add_argument("--channel", action="append", metavar="CHANNEL",
                   help=f"channel(s) a storefront key is bound to ({', '.join(CHANNELS)}; repeat or comma-separate)")
    c.add_argument("--name", help="a name for people and logs (default <role>-<id>); unique among active keys")
    c.add_argument("--rate-limit", type=int, help="requests per window for this key (default: its role's)")
    c.add_argument("--keys-file", help="default RECSVC_KEYS_FILE, then recsvc-keys.json")
    c.set_defaults(run=cmd_create)
    ls = ks.add_parser("list", help="the keys, never their secrets")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--keys-file")
    ls.set_defaults(run=cmd_list)
    r = ks.add_parser("revoke", help="revoke a key by id or name (every worker refuses it within a second)")
    r.add_argument("key", metavar="KEY_ID_OR_NAME")
    r.add_argument("--keys-file")
    r.set_defaults(run=cmd_revoke)
