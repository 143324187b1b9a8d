#!/usr/bin/env python3
"""Writes N users as JSON lines in GoTrue's user shape, for `ferrotrue import`.

    bench/gen_users.py 1000000 > users.jsonl       # ~0.9 GB, ~20 s
    bench/gen_users.py 1000 --seed 7 --out users.jsonl

Every user has the same password (`--password`, default bench-password-1234), through ONE
precomputed hash: argon2id at the server's default cost for most users, bcrypt (cost 10, `$2a$`,
as GoTrue stores it) for every `--bcrypt-every`-th user. Nothing is hashed here.

Users are `user<i>@example.com`, confirmed, with an `email` identity (as GoTrue has); every 5th
also has a confirmed phone (`1555<i>`, its `phone` identity), every 10th a GitHub identity and
a `full_name` in its metadata, every 50th is banned until 2100. Ids are derived from the seed
and the index, so re-running with the same arguments writes the same file (`import` is
idempotent on it).
"""

import argparse
import datetime
import json
import random
import sys
import uuid

# argon2id, m=19456 t=2 p=1 (the server's default cost), of "bench-password-1234".
ARGON2_HASH = "$argon2id$v=19$m=19456,t=2,p=1$kE0m3Fjglm7kjn6sGytAgg$PXZzvma6EUXwDRQdKSOj6vtDx31m05WnfsieBLrbDO4"
# bcrypt cost 10, $2a$ as GoTrue writes it, of "bench-password-1234".
BCRYPT_HASH = "$2a$10$abcdefghijklmnopqrstuuzsQFCiVYynPM9vksECo9cLmQjhnilS2"
DEFAULT_PASSWORD = "bench-password-1234"
EPOCH = datetime.date(2024, 1, 1)


def ts(seconds):
    """Postgres-style timestamps, as a `psql` / `COPY` export of auth.users writes them."""
    days, rest = divmod(seconds, 86400)
    d = EPOCH + datetime.timedelta(days=days)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return f"{d.isoformat()} {h:02d}:{m:02d}:{s:02d}.{(seconds * 7919) % 1000000:06d}+00"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("count", type=int, help="number of users")
    p.add_argument("--seed", type=int, default=1, help="ids and choices are derived from it (default 1)")
    p.add_argument("--out", default="-", help="output file (default: stdout)")
    p.add_argument("--bcrypt-every", type=int, default=10, help="every N-th user gets the bcrypt hash (0: none)")
    p.add_argument("--argon2-hash", default=ARGON2_HASH, help="the shared argon2 hash (default: of %s)" % DEFAULT_PASSWORD)
    p.add_argument("--bcrypt-hash", default=BCRYPT_HASH, help="the shared bcrypt hash (default: of %s)" % DEFAULT_PASSWORD)
    args = p.parse_args()
    rng = random.Random(args.seed)
    out = sys.stdout if args.out == "-" else open(args.out, "w", buffering=1 << 20)
    dumps = json.dumps
    first_names = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Linus"]
    base = 0
    for i in range(args.count):
        uid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        email = f"user{i}@example.com"
        base += 1 + (i % 3)
        created = ts(base)
        confirmed = ts(base + 60)
        signed_in = ts(base + 3600)
        pw = args.bcrypt_hash if args.bcrypt_every and i % args.bcrypt_every == args.bcrypt_every - 1 else args.argon2_hash
        providers = ["email"]
        identities = [
            {
                "identity_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "id": uid,
                "user_id": uid,
                "provider": "email",
                "identity_data": {"sub": uid, "email": email, "email_verified": True, "phone_verified": False},
                "last_sign_in_at": signed_in,
                "created_at": created,
                "updated_at": created,
                "email": email,
            }
        ]
        phone = None
        if i % 5 == 4:
            phone = f"1555{i:08d}"
            providers.append("phone")
            identities.append(
                {
                    "identity_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "id": uid,
                    "user_id": uid,
                    "provider": "phone",
                    "identity_data": {"sub": uid, "phone": phone, "email_verified": False, "phone_verified": True},
                    "created_at": created,
                    "updated_at": created,
                }
            )
        meta = {}
        if i % 10 == 9:
            name = f"{first_names[i % len(first_names)]} {i}"
            meta = {"full_name": name, "avatar_url": f"https://avatars.example.com/u/{i}", "user_name": f"gh{i}"}
            providers.append("github")
            identities.append(
                {
                    "identity_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "id": str(1000000 + i),
                    "user_id": uid,
                    "provider": "github",
                    "identity_data": {"sub": str(1000000 + i), "email": email, "name": name, "email_verified": True},
                    "last_sign_in_at": signed_in,
                    "created_at": created,
                    "updated_at": created,
                    "email": email,
                }
            )
        user = {
            "instance_id": "00000000-0000-0000-0000-000000000000",
            "id": uid,
            "aud": "authenticated",
            "role": "authenticated",
            "email": email,
            "encrypted_password": pw,
            "email_confirmed_at": confirmed,
            "phone": phone,
            "phone_confirmed_at": confirmed if phone else None,
            "last_sign_in_at": signed_in,
            "raw_app_meta_data": {"provider": "email", "providers": providers},
            "raw_user_meta_data": meta,
            "identities": identities,
            "created_at": created,
            "updated_at": signed_in,
            "banned_until": "2100-01-01 00:00:00+00" if i % 50 == 49 else None,
            "is_sso_user": False,
            "is_anonymous": False,
        }
        out.write(dumps(user, separators=(",", ":")))
        out.write("\n")
    if out is not sys.stdout:
        out.close()


if __name__ == "__main__":
    main()
