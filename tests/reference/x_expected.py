#!/usr/bin/env python3
"""Reference expectations for the X decoders, worked out independently of the Rust code.

Reads the recorded X fixtures (``../shared/fixtures/x-v2`` and ``x-v1``, or ``$TAGFLOW_FIXTURES``),
applies the rules of ``shared/PROTOCOLS.md`` as written here, and writes one
``tests/expected/x/<fixture>.json`` per fixture: the decoded records, the posts, the users with their
latest handle and name, and the aggregated map (from, to, kind) -> count. ``tests/decode_x.rs`` compares
the decoders against these files.

It also reconciles its counts with the independently counted numbers of ``fixtures/SOURCES.md``: those
count every candidate edge of the payload (every retweeted/quoted reference, every reply, every mention
entity), before any rule. For each kind this script checks that its candidates equal SOURCES.md, and
records why each candidate that gives no edge was dropped (``self_loop``, ``duplicate`` within a post,
``unresolvable``, ``rt_auto_mention``), so that the Rust test can check
``decoded + dropped == SOURCES.md`` per kind. The script stops with an error when they disagree.

Rule choices (where two readings exist, the one that agrees with SOURCES.md):

- v2 reply: a tweet is a reply when it has a ``replied_to`` reference; the target is
  ``in_reply_to_user_id``. ``noflat.jsonl`` has one tweet that starts with ``@POTUS`` and carries
  ``in_reply_to_user_id`` without any reference: SOURCES.md counts reply=31, which is the number of
  ``replied_to`` references, not the 32 tweets with ``in_reply_to_user_id``. That tweet is a mention only.
- v1 reply: ``in_reply_to_user_id_str`` alone, with or without ``in_reply_to_status_id_str``:
  ``search_2014.json`` has three ``@user``-leading statuses with no status id and SOURCES.md counts
  reply=9, which includes them.
- RT mention (PROTOCOLS.md: not a second, mention interaction): a retweet's text is ``RT @author: ...``,
  so the automatic mention is the entity at offset 3 (the first one when there are no offsets). Only that
  one is dropped; mentions copied from the retweeted text still count (SOURCES.md counts all of them;
  ``search_2014.json`` has a retweet whose text mentions its own author again at offset 41: that one
  counts). SOURCES.md counts the automatic mention too, hence the ``rt_auto_mention`` drops.
- A retweet of a quote (v1) is a retweet only.
- Self-loops and repeats of (kind, target) within one post give no edge (Post::interact).
- A v2 mention without ``id`` is resolved by username against ``includes.users``, case-insensitively;
  a mention with an ``id`` needs no ``includes`` entry (its username is then the only profile).

Stdlib only. Run from anywhere: ``python3 tests/reference/x_expected.py``.
"""

import json
import os
import re
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("TAGFLOW_FIXTURES") or ROOT.parent / "shared" / "fixtures")
OUT = ROOT / "tests" / "expected" / "x"

V2_FILES = [
    "streaming_output.jsonl",
    "streaming_output_with_error.jsonl",
    "noflat.jsonl",
    "brexit.jsonl",
    "kpop.jsonl",
    "mentions_tweet.jsonl",
    "cotweet.jsonl",
    "quoted_edit.jsonl",
    "two_tweets.jsonl",
]
V1_FILES = ["search_2014.json", "twitter_api_response.json"]

KINDS = ["repost", "reply", "quote", "mention"]
# SOURCES.md says "retweet" for what the model calls "repost".
SOURCES_NAME = {"repost": "retweet", "reply": "reply", "quote": "quote", "mention": "mention"}


def sources_counts():
    """fixture path (e.g. 'x-v2/noflat.jsonl') -> {count name: int} from SOURCES.md."""
    counts = {}
    for line in (FIXTURES / "SOURCES.md").read_text(encoding="utf-8").splitlines():
        if not line.startswith("- x-v"):
            continue
        fields = [f.strip() for f in line[2:].split("|")]
        counts[fields[0]] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", fields[5])}
    return counts


def key(user_id):
    return "x:" + str(user_id)


def nonempty(s):
    return s if s else None


class Fixture:
    """Everything expected of one fixture file."""

    def __init__(self, name):
        self.name = name
        self.records = Counter(lines=0, posts=0, disconnects=0, ignored=0, errors=0)
        self.posts = {}
        self.users = {}
        self.edges = Counter()
        self.candidates = Counter()
        self.dropped = {k: Counter() for k in KINDS}
        self.notes = Counter()

    def merge_user(self, k, handle=None, name=None):
        u = self.users.setdefault(k, {"handle": None, "name": None})
        if nonempty(handle):
            u["handle"] = handle
        if nonempty(name):
            u["name"] = name

    def start_post(self, post_id, author, handle, name, created_at, tags, refs):
        """Returns an emitter for the post's candidate edges, or None for a post already seen."""
        self.records["posts"] += 1
        if post_id in self.posts:
            # A stream may deliver a tweet twice; the graph applies a post once (by platform and id).
            self.notes["repeated_post"] += 1
            return None
        self.posts[post_id] = {"author": author, "created_at": created_at, "tags": tags, "refs": refs}
        self.merge_user(author, handle, name)
        seen = set()

        def candidate(kind, target, handle=None, name=None, drop=None):
            """One candidate edge of the post: dropped for `drop`, a self-loop or a repeat, else kept."""
            self.candidates[kind] += 1
            if drop is None and target == author:
                drop = "self_loop"
            if drop is None and (kind, target) in seen:
                drop = "duplicate"
            if drop in ("self_loop", "unresolvable", "rt_auto_mention"):
                self.dropped[kind][drop] += 1
                return
            if drop == "duplicate":
                self.dropped[kind][drop] += 1
            else:
                seen.add((kind, target))
                self.edges[(author, target, kind)] += 1
            self.merge_user(target, handle, name)

        return candidate

    def check_and_dump(self, sources):
        totals = Counter()
        for (_, _, kind), n in self.edges.items():
            totals[kind] += n
        reconcile = {"sources": sources, "candidates": {}, "dropped": {}}
        problems = []
        for kind in KINDS:
            got = self.candidates[kind]
            want = sources.get(SOURCES_NAME[kind], 0)
            reconcile["candidates"][kind] = got
            reconcile["dropped"][kind] = dict(sorted(self.dropped[kind].items()))
            if got != want:
                problems.append(f"{kind}: {got} candidates, SOURCES.md says {want}")
            if totals[kind] + sum(self.dropped[kind].values()) != got:
                problems.append(f"{kind}: edges and drops do not add up to the candidates")
        unresolvable = sum(d.get("unresolvable", 0) for d in self.dropped.values())
        if "resolvable_edges" in sources:
            resolvable = sum(self.candidates.values()) - unresolvable
            if resolvable != sources["resolvable_edges"]:
                problems.append(f"resolvable_edges: {resolvable}, SOURCES.md says {sources['resolvable_edges']}")
        if sources.get("unresolvable_edges", 0) != unresolvable:
            problems.append(f"unresolvable: {unresolvable}, SOURCES.md says {sources.get('unresolvable_edges', 0)}")
        for ours, theirs in [("posts", "tweets"), ("disconnects", "operational_disconnect"), ("errors", "unparsable_lines")]:
            if self.records[ours] != sources.get(theirs, 0):
                problems.append(f"{ours}: {self.records[ours]}, SOURCES.md {theirs}={sources.get(theirs, 0)}")
        for theirs in ("lines", "pages"):
            if theirs in sources and self.records["lines"] - self.records["errors"] != sources[theirs]:
                problems.append(f"{theirs}: {self.records['lines'] - self.records['errors']} well-formed lines")
        if "matching_rules_lines" in sources and self.notes["matching_rules_lines"] != sources["matching_rules_lines"]:
            problems.append(f"matching_rules_lines: {self.notes['matching_rules_lines']}")
        if problems:
            sys.exit(f"{self.name}: disagrees with SOURCES.md:\n  " + "\n  ".join(problems))
        reconcile["notes"] = dict(sorted(self.notes.items()))
        doc = {
            "fixture": self.name,
            "records": dict(self.records),
            "totals": {k: totals[k] for k in KINDS},
            "reconcile": reconcile,
            "users": dict(sorted(self.users.items())),
            "edges": [[f, t, k, n] for (f, t, k), n in sorted(self.edges.items())],
            "posts": dict(sorted(self.posts.items())),
        }
        OUT.mkdir(parents=True, exist_ok=True)
        out = OUT / (Path(self.name).stem + ".json")
        out.write_text(json.dumps(doc, indent=1, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")
        print(f"{self.name}: {dict(self.records)} totals={doc['totals']} -> {out.relative_to(ROOT)}")


def tags_of(hashtags, field):
    tags = []
    for h in hashtags or []:
        t = (h.get(field) or "").lstrip("#＃").lower()
        if t and t not in tags:
            tags.append(t)
    return tags


def is_rt_auto_mention(i, start):
    """`RT @author: ` puts the retweeted author's mention at offset 3."""
    return start == 3 if start is not None else i == 0


# ---------------------------------------------------------------------------------------------- X v2


def v2_line(fx, raw):
    if not raw.strip():
        return  # a keep-alive, or the end of the file
    fx.records["lines"] += 1
    try:
        line = json.loads(raw)
    except ValueError:
        fx.records["errors"] += 1
        return
    if "matching_rules" in line:
        fx.notes["matching_rules_lines"] += 1
    data = line.get("data")
    tweets = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
    includes = line.get("includes") or {}
    users = {u["id"]: u for u in includes.get("users") or [] if "id" in u}
    by_name = {u["username"].lower(): u for u in includes.get("users") or [] if "username" in u}
    authors = {t["id"]: t.get("author_id") for t in includes.get("tweets") or [] if "id" in t}
    for t in tweets:
        v2_tweet(fx, t, users, by_name, authors)
    if any(e.get("title") == "operational-disconnect" for e in line.get("errors") or []):
        fx.records["disconnects"] += 1
    elif not tweets:
        fx.records["ignored"] += 1


def v2_tweet(fx, t, users, by_name, authors):
    author = key(t["author_id"])
    au = users.get(t["author_id"], {})
    created = int(datetime.fromisoformat(t["created_at"].replace("Z", "+00:00")).timestamp()) if "created_at" in t else None
    entities = t.get("entities") or {}
    refs = []
    for r in t.get("referenced_tweets") or []:
        if r["id"] not in refs:
            refs.append(r["id"])
    edge = fx.start_post(t["id"], author, au.get("username"), au.get("name"), created, tags_of(entities.get("hashtags"), "tag"), refs)
    if edge is None:
        return

    def profile(uid):
        u = users.get(uid, {})
        return u.get("username"), u.get("name")

    kinds = [r["type"] for r in t.get("referenced_tweets") or []]
    retweet = "retweeted" in kinds
    for r in t.get("referenced_tweets") or []:
        kind = {"retweeted": "repost", "quoted": "quote"}.get(r["type"])
        if kind is None:
            continue
        target = authors.get(r["id"])
        if target is None:
            edge(kind, None, drop="unresolvable")
        else:
            edge(kind, key(target), *profile(target))
    if "replied_to" in kinds:
        edge("reply", key(t["in_reply_to_user_id"]), *profile(t["in_reply_to_user_id"]))
    elif t.get("in_reply_to_user_id"):
        fx.notes["in_reply_to_user_id_without_replied_to"] += 1
    for i, m in enumerate(entities.get("mentions") or []):
        if retweet and is_rt_auto_mention(i, m.get("start")):
            # The text must read `RT @<that user>:`, or this is not the automatic mention.
            assert t["text"].lower().startswith("rt @" + m["username"].lower() + ":"), t["id"]
            edge("mention", None, drop="rt_auto_mention")
            continue
        if "id" in m:
            handle, name = profile(m["id"])
            edge("mention", key(m["id"]), handle or m.get("username"), name)
        elif m.get("username", "").lower() in by_name:
            u = by_name[m["username"].lower()]
            edge("mention", key(u["id"]), u.get("username"), u.get("name"))
        else:
            edge("mention", None, drop="unresolvable")


# ---------------------------------------------------------------------------------------------- X v1


def v1_doc(fx, doc):
    fx.records["lines"] += 1
    statuses = doc["statuses"] if isinstance(doc, dict) and "statuses" in doc else doc if isinstance(doc, list) else [doc]
    for s in statuses:
        v1_status(fx, s)


def v1_status(fx, s):
    user = s["user"]
    author = key(user["id_str"])
    created = int(datetime.strptime(s["created_at"], "%a %b %d %H:%M:%S %z %Y").timestamp())
    entities = (s.get("extended_tweet") or {}).get("entities") or s.get("entities") or {}
    rt = s.get("retweeted_status")
    refs = []
    if rt:
        refs.append(rt["id_str"])
    elif s.get("quoted_status") or s.get("quoted_status_id_str"):
        refs.append((s.get("quoted_status") or {}).get("id_str") or s["quoted_status_id_str"])
    if s.get("in_reply_to_status_id_str") and s["in_reply_to_status_id_str"] not in refs:
        refs.append(s["in_reply_to_status_id_str"])
    edge = fx.start_post(s["id_str"], author, user.get("screen_name"), user.get("name"), created, tags_of(entities.get("hashtags"), "text"), refs)
    if edge is None:
        return
    if rt:
        edge("repost", key(rt["user"]["id_str"]), rt["user"].get("screen_name"), rt["user"].get("name"))
        if s.get("quoted_status"):
            fx.notes["retweet_of_quote"] += 1
    elif s.get("quoted_status"):
        q = s["quoted_status"]["user"]
        edge("quote", key(q["id_str"]), q.get("screen_name"), q.get("name"))
    if s.get("in_reply_to_user_id_str"):
        if not s.get("in_reply_to_status_id_str"):
            fx.notes["reply_without_status_id"] += 1
        edge("reply", key(s["in_reply_to_user_id_str"]), s.get("in_reply_to_screen_name"))
    for i, m in enumerate(entities.get("user_mentions") or []):
        if rt and is_rt_auto_mention(i, (m.get("indices") or [None])[0]):
            assert s["text"].startswith("RT @" + m["screen_name"] + ":"), s["id_str"]
            assert m["id_str"] == rt["user"]["id_str"], s["id_str"]
            edge("mention", None, drop="rt_auto_mention")
            continue
        edge("mention", key(m["id_str"]), m.get("screen_name"), m.get("name"))


def main():
    sources = sources_counts()
    for name in V2_FILES:
        fx = Fixture("x-v2/" + name)
        for raw in (FIXTURES / "x-v2" / name).read_bytes().split(b"\n"):
            v2_line(fx, raw)
        fx.check_and_dump(sources[fx.name])
    for name in V1_FILES:
        fx = Fixture("x-v1/" + name)
        v1_doc(fx, json.loads((FIXTURES / "x-v1" / name).read_bytes()))
        fx.check_and_dump(sources[fx.name])


if __name__ == "__main__":
    main()
