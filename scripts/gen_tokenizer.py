#!/usr/bin/env python3
"""Tokenizer parity fixture (kind `tokenizer`): `cases.jsonl.gz`, one JSON object per line.

Reference: open_clip's `SimpleTokenizer` (same BPE file and merges as AVA-DINO's `CLIP/tokenizer.py`)
switched to the AVA/OpenAI spellings `<|startoftext|>` / `<|endoftext|>` (open_clip 3 spells them
`<start_of_text>`) and AVA's clean-up (whitespace runs are `regex` `\s+`, open_clip uses `str.split`),
with the reference `tokenize(texts, 77)` behaviour: `[SOT] + ids + [EOT]`, zero padded to 77, and an
error (written `"ids": null`) when that is longer than 77 - open_clip would silently truncate.

Each line: `{"text": ..., "ids": [77 ints] | null, "ftfy": bool, "ids_no_ftfy": [...] | null}`.
`ftfy` is true where `ftfy.fix_text` changes the text; for those lines `ids_no_ftfy` holds the ids the
same tokenizer gives with ftfy switched off (our tokenizer leaves ftfy out; see docs/DEVIATIONS.md).

Content: every reference prompt (7 normal + 5 abnormal states x 35 templates) for the 44 category
names of the five multi-class datasets (44 x 420 = 18,480 sentences), the same for the path words the
reference actually uses and the single-class dataset names, plus edge cases (punctuation, digits,
accents, CJK, apostrophes, HTML entities, whitespace, special tokens, an over-long text).

    python scripts/gen_tokenizer.py --out tests/fixtures/tokenizer/reference/cases.jsonl.gz
    python scripts/gen_tokenizer.py --out /tmp/p/tokenizer/extra/cases.jsonl --seed 5 --random 2000
"""

import argparse
import gzip
import json
import os
import random

import ftfy
import html
import open_clip.tokenizer as oc
import regex

from gen_clip_text import ABNORMAL, NORMAL, TEMPLATES, ensemble_sentences

SOT, EOT, CTX = 49406, 49407, 77

CATEGORIES = {
    'mvtec': ['bottle', 'cable', 'capsule', 'carpet', 'grid', 'hazelnut', 'leather', 'metal_nut', 'pill',
              'screw', 'tile', 'toothbrush', 'transistor', 'wood', 'zipper'],
    'visa': ['candle', 'capsules', 'cashew', 'chewinggum', 'fryum', 'macaroni1', 'macaroni2', 'pcb1', 'pcb2',
             'pcb3', 'pcb4', 'pipe_fryum'],
    'btad': ['01', '02', '03'],
    'mpdd': ['bracket_black', 'bracket_brown', 'bracket_white', 'connector', 'metal_plate', 'tubes'],
    'mvtec_ad2': ['can', 'fabric', 'fruit_jelly', 'rice', 'sheet_metal', 'vial', 'wallplugs', 'walnuts'],
}
# Words the reference derives from paths (split('/')[-4]) and names of the single-class datasets.
EXTRA_WORDS = ['Data', 'industrial', 'medical', 'ksdd2', 'kvasir', 'colondb', 'clinicdb', 'CVC-ClinicDB']

EDGE = [
    '', ' ', 'a', 'A', 'Hello, World!', 'hello world', '  spaced   out\t\ttabs\nnewline\r\n ',
    'a photo of a metal_nut.', 'METAL_NUT', 'Metal Nut', 'x' * 60, 'supercalifragilisticexpialidocious',
    '!!!???...', '(a) [b] {c} <d> "e" `f` ~g~ @h #i $j %k ^l &m *n', '--==--__', 'a.b,c;d:e', '...',
    '0123456789', '3.14159', '1,000,000', 'pcb4 x2 v10', 'version 2.0.1-rc3', '½ ¾ ² ³', '١٢٣ ٤٥٦',
    "it's", "don't", "they're", "we've", "I'm", "you'll", "he'd", "IT'S", "'s 't 're", "rock 'n' roll",
    "o'clock", "'quoted'", "it’s curly", "‘single’ “double”",
    'café', 'naïve résumé', 'Ångström', 'straße', 'ÀÉÎÕÜ', 'Ελληνικά ΟΔΟΣ', 'Привет мир', 'ﬁne ﬂow',
    'cafe\u0301 decomposed', 'İstanbul', 'ǅ title case',
    '日本語のテキスト', '中文测试', '한국어 텍스트', 'ｆｕｌｌｗｉｄｔｈ', 'emoji 🙂 🚀', '👩‍👩‍👧', 'mixed日本abc123',
    '&amp;', '&lt;b&gt;bold&lt;/b&gt;', 'fish &amp; chips', '&amp;amp;', '&#39;s', '&#x27;t', '&copy; 2024',
    '&nbsp;space', '&notit;', '&amp', '&ampx', '&#0;', '&#128;', '&#xD800;', '&#99999999;', '&bogus;', '&',
    '<|startoftext|>', '<|endoftext|>', 'a <|endoftext|> b', '<|STARTOFTEXT|>',
    'tab\there', 'nbsp\u00a0here', 'ideographic\u3000space', 'zero\u200bwidth', 'line\u2028sep',
    'control\x07bell', '\x1cinfo\x1dsep\x1e', 'a\x1c b', 'nel\x85next', 'ogham\u1680space', 'Ã©tÃ© mojibake', 'faÃ§ade',
    ' '.join(['word'] * 75), ' '.join(['word'] * 76),  # 77 ids exactly, then 78: an error
    ' '.join(['longer'] * 200),
]


def ava_tokenizer():
    """open_clip's SimpleTokenizer made identical to AVA-DINO's CLIP/tokenizer.py."""
    tok = oc.SimpleTokenizer()
    for name, i in [('<|startoftext|>', SOT), ('<|endoftext|>', EOT)]:
        tok.encoder[name] = i
        tok.cache[name] = name
    tok.pat = regex.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                            regex.IGNORECASE)

    def clean(text):
        text = html.unescape(html.unescape(oc.ftfy.fix_text(text))).strip()  # basic_clean
        return regex.sub(r'\s+', ' ', text).strip().lower()  # whitespace_clean, then lower()

    tok.clean_fn = clean
    return tok


def reference_ids(tok, text):
    ids = [SOT] + tok.encode(text) + [EOT]
    if len(ids) > CTX:
        return None  # reference tokenize(..., truncate=False) raises
    return ids + [0] * (CTX - len(ids))


def random_texts(rng, n):
    alphabet = ("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'\"-_()&#/ "
                "éèàüößçñ日本中文한국Ωλж \t")
    return [''.join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(n)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', required=True, help='cases.jsonl or cases.jsonl.gz')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--random', type=int, default=300, help='number of random texts')
    ap.add_argument('--no-prompts', action='store_true', help='skip the 18,480 reference prompts')
    a = ap.parse_args()

    texts = []
    if not a.no_prompts:
        words = [w for ws in CATEGORIES.values() for w in ws]
        assert len(words) == 44
        for w in words + EXTRA_WORDS:
            texts += ensemble_sentences(NORMAL, w) + ensemble_sentences(ABNORMAL, w)
    texts += EDGE + random_texts(random.Random(a.seed), a.random)

    tok = ava_tokenizer()
    plain = ava_tokenizer()
    real_fix = oc.ftfy.fix_text
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    opener = gzip.open if a.out.endswith('.gz') else open
    n_ftfy = n_null = 0
    with opener(a.out, 'wt', encoding='utf-8') as f:
        for t in texts:
            ids = reference_ids(tok, t)
            row = {'text': t, 'ids': ids, 'ftfy': ftfy.fix_text(t) != t}
            if row['ftfy']:
                oc.ftfy.fix_text = lambda s: s
                try:
                    row['ids_no_ftfy'] = reference_ids(plain, t)
                finally:
                    oc.ftfy.fix_text = real_fix
                n_ftfy += 1
            n_null += ids is None
            f.write(json.dumps(row, ensure_ascii=False) + '\n')
    print(f'{a.out}: {len(texts)} texts ({n_ftfy} changed by ftfy, {n_null} too long)')


if __name__ == '__main__':
    main()
