"""Tiny hand-made datasets in the released format (SPEC 2.1), small enough to check every tensor by hand.

Ten PEs, so PEs 9 and 10 are the test split (round(0.9 * 10) = 9). Items 2, 5, 7. Embedding width D = 4.

PE  user  events (event_number order)         type
1   1     s10                                 sessions only
2   2     c100                                conversations only
3   3     s11, c101   (rows out of order)     intersection
4   1     s10, c100, s13, c101                intersection
5   4     s13                                 sessions only
6   5     c101                                conversations only
7   6     s11                                 sessions only
8   7     s10, s11                            sessions only
9   8     c102, s12                           intersection (test)
10  9     s12, s10                            sessions only (test)

Sessions: s10 tags {1,2,3}; s11 {2,4,5}; s12 {6,88} (test only, never in training -> ignored);
s13 = 1000 actions tagged 1 plus one action tagged 77: 77 has 1 of 1011 training tag occurrences (< 0.1 %), so it
is dropped; tags 2..5 have 2 each (0.2 %) and survive. s14 is never referenced (a counted drop).
Conversations: c100 keywords {2,50,51} (2 is shared with the tag space), c101 {52,50}, c102 {53 (unseen), 50},
c103 unreferenced. Embeddings: c100 = [1,0,0,0], [3,0,0,0], [2,3,0,0] (mean [2,1,0,0]); c101 = [0,4,0,0],
[0,0,4,0] (mean [0,2,2,0]); c102 = [1,1,1,1], [3,3,3,3] (mean [2,2,2,2]); c103 = two rows of 9s. The sentences are
spread over two parts so that a conversation straddles them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

USERS = """user_id,purchase_event_id,event_number,conversation_id,session_id
1,1,1,,10.0
2,2,1,100.0,
3,3,2,101.0,
3,3,1,,11.0
1,4,1,,10.0
1,4,2,100.0,
1,4,3,,13.0
1,4,4,101.0,
4,5,1,,13.0
5,6,1,101.0,
6,7,1,,11.0
7,8,1,,10.0
7,8,2,,11.0
8,9,1,102.0,
8,9,2,,12.0
9,10,1,,12.0
9,10,2,,10.0
"""

PURCHASES = """purchase_event_id,item_id
1,2
2,5
3,2
3,7
4,5
5,7
6,2
7,5
8,2
8,5
9,7
10,2
"""


def _post_filter() -> str:
    lines = ["purchase_event_id,item_id"]
    for pe in range(1, 11):
        items = [2, 5, 7] if pe in (3, 5, 9) else [2, 5]
        lines += [f"{pe},{item}" for item in items]
    return "\n".join(lines) + "\n"


def _sessions() -> str:
    lines = ["session_id,action_number,action_tags"]
    lines += ['10,1,"1,2"', "10,2,3", '10,3,"2,3"']
    lines += ["11,1,2", '11,2,"4,5"', '11,3,"4,5"']
    lines += ['12,1,"6,88"', "12,2,"]
    lines += [f"13,{a},1" for a in range(1, 1001)]
    lines += ["13,1001,77"]
    lines += ['14,1,"1,2"']
    return "\n".join(lines) + "\n"


KEYWORDS = """conversation_id,sentence_number,sentence_speaker,keywords
100,1,user,"2,50"
100,2,agent,
100,3,user,51
101,1,agent,52
101,2,user,50
102,1,user,53
102,2,agent,50
103,1,user,50
103,2,agent,51
"""

EMBEDDING_PART_1 = """conversation_id,sentence_number,sentence_speaker,embedding_1,embedding_2,embedding_3,embedding_4
100,1,user,1.0,0.0,0.0,0.0
100,2,agent,3.0,0.0,0.0,0.0
101,1,agent,0.0,4.0,0.0,0.0
"""

EMBEDDING_PART_2 = """conversation_id,sentence_number,sentence_speaker,embedding_1,embedding_2,embedding_3,embedding_4
100,3,user,2.0,3.0,0.0,0.0
101,2,user,0.0,0.0,4.0,0.0
102,1,user,1.0,1.0,1.0,1.0
102,2,agent,3.0,3.0,3.0,3.0
103,1,user,9.0,9.0,9.0,9.0
103,2,agent,9.0,9.0,9.0,9.0
"""

TEXT = """conversation_id,sentence_number,sentence_speaker,text
100,1,user,I want to insure my car
100,2,agent,Of course
100,3,user,And my house too
101,1,agent,How can I help with your claim
101,2,user,The car was damaged
102,1,user,I am moving abroad
102,2,agent,Then travel cover helps
103,1,user,Hello
103,2,agent,Goodbye
"""

KEYWORD_MAPPING = """word,keyword_id
car,50
house,51
claim,52
travel,53
"""


def write_tiny_dataset(
    root: Path, embeddings: bool = True, text: bool = False, keywords: bool = True
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "data_users.csv").write_text(USERS)
    (root / "data_purchase_events.csv").write_text(PURCHASES)
    (root / "data_post_filter.csv").write_text(_post_filter())
    (root / "data_sessions.csv").write_text(_sessions())
    if keywords:
        (root / "data_conversations_keyword.csv").write_text(KEYWORDS)
    if embeddings:
        folder = root / "data_conversations_embedding"
        folder.mkdir(exist_ok=True)
        (folder / "data_conversations_embedding_1.csv").write_text(EMBEDDING_PART_1)
        (folder / "data_conversations_embedding_2.csv").write_text(EMBEDDING_PART_2)
    if text:
        (root / "data_conversations_text.csv").write_text(TEXT)
        (root / "keyword_mapping.csv").write_text(KEYWORD_MAPPING)
    return root


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    """Replace ``old`` by ``new`` in a fixture file (it must occur)."""
    content = path.read_text()
    assert old in content, f"{old!r} not in {path}"
    path.write_text(content.replace(old, new, count))


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return write_tiny_dataset(tmp_path / "data")


def write_released_tables(
    root: Path,
    users: list[tuple],
    sessions: dict[int, list[str]],
    conversations: dict[int, list[str]],
    num_pes: int = 10,
) -> Path:
    """A released-format folder from hand-made tables: ``users`` rows (user, PE, event_number, conversation or
    None, session or None) in file order, ``sessions`` id -> comma-separated tags per action, ``conversations``
    id -> comma-separated keywords per sentence. PE p buys item 1 + p % 2; items 1 and 2 are always purchasable;
    the embedding of sentence n of conversation c is [c, n]."""

    def cell(value) -> str:
        return "" if value is None else f"{value}.0"

    root.mkdir(parents=True)
    lines = ["user_id,purchase_event_id,event_number,conversation_id,session_id"]
    lines += [f"{u},{pe},{n},{cell(c)},{cell(s)}" for u, pe, n, c, s in users]
    (root / "data_users.csv").write_text("\n".join(lines) + "\n")
    pes = range(1, num_pes + 1)
    (root / "data_purchase_events.csv").write_text(
        "purchase_event_id,item_id\n" + "".join(f"{pe},{1 + pe % 2}\n" for pe in pes)
    )
    (root / "data_post_filter.csv").write_text(
        "purchase_event_id,item_id\n" + "".join(f"{pe},1\n{pe},2\n" for pe in pes)
    )
    lines = ["session_id,action_number,action_tags"]
    lines += [f'{s},{a},"{tags}"' for s, actions in sessions.items() for a, tags in enumerate(actions, 1)]
    (root / "data_sessions.csv").write_text("\n".join(lines) + "\n")
    lines = ["conversation_id,sentence_number,sentence_speaker,keywords"]
    lines += [
        f'{c},{n},user,"{k}"' for c, sentences in conversations.items() for n, k in enumerate(sentences, 1)
    ]
    (root / "data_conversations_keyword.csv").write_text("\n".join(lines) + "\n")
    folder = root / "data_conversations_embedding"
    folder.mkdir()
    lines = ["conversation_id,sentence_number,sentence_speaker,embedding_1,embedding_2"]
    lines += [
        f"{c},{n},user,{c}.0,{n}.0"
        for c, sentences in conversations.items()
        for n in range(1, len(sentences) + 1)
    ]
    (folder / "data_conversations_embedding_1.csv").write_text("\n".join(lines) + "\n")
    return root
