"""Small synthetic Korean stand-ins for the real corpus and benchmark files.

The offline smoke run of the pipeline cannot download the 1M-sentence wiki
corpus, KorSTS, KLUE-STS or KorNLI, but it must still exercise the *real*
parsers and format traps. This module writes tiny synthetic files in the exact
byte formats of those sources:

* ``korean_wiki_smoke.txt`` - one Wikipedia-like declarative sentence per line;
* ``sts-{train,dev,test}.tsv`` - KorSTS TSVs (dev/test without a final newline,
  sentences with unbalanced ``"`` so that default CSV quoting merges rows);
* ``klue-sts-v1.1_dev.json`` - KLUE-STS records with simulated annotators;
* ``multinli.train.ko.tsv`` / ``snli_1.0_train.ko.tsv`` - KorNLI rows grouped
  per premise, with a few ``n/a`` hypotheses.

All text is generated here from templates and small hand-written vocabularies.
Every sentence is rendered from a *frame* (slots such as subject, place, year,
object, action). An STS pair is two renderings of frames that share a chosen
number of slots, so its gold score follows from the text and a small model can
learn it; the corpus, STS and NLI sets draw from the same vocabularies so that a
tokenizer trained on the corpus covers the benchmarks.

Output is a pure function of ``seed``: only ``random.Random`` instances seeded
with integers are used, and nothing iterates over sets or depends on hashing.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Callable

__all__ = ["write_smoke_sources", "FILE_NAMES"]

#: Output name -> file name, matching the real sources' file names.
FILE_NAMES: dict[str, str] = {
    "corpus": "korean_wiki_smoke.txt",
    "korsts_train": "sts-train.tsv",
    "korsts_dev": "sts-dev.tsv",
    "korsts_test": "sts-test.tsv",
    "klue_dev": "klue-sts-v1.1_dev.json",
    "kornli_mnli": "multinli.train.ko.tsv",
    "kornli_snli": "snli_1.0_train.ko.tsv",
}

CORPUS_SIZE = 3000
STS_SIZES = {"korsts_train": 720, "korsts_dev": 300, "korsts_test": 300}
KLUE_SIZE = 300
MNLI_EVENT_PREMISES = 190
MNLI_FORUM_PREMISES = 90
SNLI_PREMISES = 200

KORSTS_HEADER = "genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2"
KORNLI_HEADER = "sentence1\tsentence2\tgold_label"

Groups = list[list[str]]  # a vocabulary: synonym groups; index = meaning, member = surface form


# --------------------------------------------------------------------------- particles

# Final-consonant index of the Sino-Korean reading of each digit (0 = none, 8 = ㄹ),
# so that years like "2017년" or "30분" get the right particle.
_DIGIT_JONG = {"0": 21, "1": 8, "2": 0, "3": 16, "4": 0, "5": 0, "6": 1, "7": 8, "8": 8, "9": 0}
_JOSA = {"topic": ("은", "는"), "subj": ("이", "가"), "obj": ("을", "를"), "and": ("과", "와")}


def _jong(word: str) -> int:
    """Final consonant index of the word's last sound (0 when it ends in a vowel)."""
    core = word.rstrip("'\" .,!?")
    if not core:
        return 0
    ch = core[-1]
    code = ord(ch) - 0xAC00
    if 0 <= code < 11172:
        return code % 28
    # Latin acronyms such as "TV" are read ending in a vowel.
    return _DIGIT_JONG.get(ch, 0)


def _p(word: str, kind: str) -> str:
    """Attach a particle whose form depends on the final consonant (은/는, 이/가, 을/를, 과/와, 으로/로)."""
    if kind == "dir":
        return word + ("으로" if _jong(word) not in (0, 8) else "로")
    with_coda, without = _JOSA[kind]
    return word + (with_coda if _jong(word) else without)


# --------------------------------------------------------------------------- vocabularies

_SURNAMES = ["김", "이", "박", "최", "정", "강", "조", "윤", "장", "임"]
_GIVEN = ["민준", "서연", "지훈", "하은", "도윤", "수아", "예준", "지우", "현우", "서윤", "건우", "채원"]
_NAMES = [s + g for g in _GIVEN for s in _SURNAMES]  # 120 fictional people

_PLACES: Groups = [
    ["서울", "서울시"], ["부산", "부산시"], ["대구", "대구시"], ["인천", "인천시"],
    ["광주", "광주시"], ["대전", "대전시"], ["울산", "울산시"], ["제주", "제주도"],
    ["수원", "수원시"], ["전주", "전주시"], ["강릉", "강릉시"], ["춘천", "춘천시"],
    ["경주", "경주시"], ["포항", "포항시"], ["창원", "창원시"], ["청주", "청주시"],
]
_PLACE_FACTS = {
    "서울": "대한민국의 수도", "부산": "대한민국 남동부의 광역시", "대구": "대한민국 동남부의 광역시",
    "인천": "대한민국 서해안의 광역시", "광주": "대한민국 서남부의 광역시", "대전": "대한민국 중부의 광역시",
    "울산": "대한민국 동남부의 광역시", "제주": "대한민국 남쪽의 섬", "수원": "경기도의 도청 소재지",
    "전주": "전라북도의 도시", "강릉": "강원도 동해안의 도시", "춘천": "강원도의 도시",
    "경주": "경상북도의 역사 도시", "포항": "경상북도의 항구 도시", "창원": "경상남도의 도시",
    "청주": "충청북도의 도시",
}
_YEARS: Groups = [[str(y)] for y in range(1990, 2024)]

# All actions are Sino-Korean 하다 verbs so that past, negative, connective and
# noun (headline) forms can be derived from the stem without a conjugator.
_ACTIONS: Groups = [
    ["진행", "실시"], ["시작", "개시"], ["마무리", "완료"], ["발표", "공표"], ["준비", "마련"],
    ["계획", "구상"], ["추진"], ["취소"], ["연기"], ["지원", "후원"], ["공개"],
]

# (topic name, person role, occupation, org groups with org kinds, event objects)
_EVENT_TOPICS = [
    ("스포츠", "선수", "축구 선수",
     [(["축구 대표팀", "축구 국가대표팀"], None), (["야구 대표팀", "야구 국가대표팀"], None),
      (["한빛 유나이티드", "한빛 유나이티드 구단"], "프로 축구 구단")],
     [["결승전", "결승 경기"], ["친선 경기", "평가전"], ["전지훈련", "해외 훈련"], ["팬 사인회", "사인회"],
      ["은퇴식", "은퇴 행사"], ["자선 경기", "기부 경기"], ["입단 기자회견", "입단 회견"]]),
    ("음악", "가수", "가수",
     [(["별빛엔터테인먼트", "별빛엔터"], "연예 기획사"), (["한빛 교향악단", "한빛 오케스트라"], "교향악단"),
      (["청솔 합창단", "청솔합창단"], "합창단")],
     [["새 앨범", "신규 음반"], ["단독 공연", "단독 콘서트"], ["전국 투어", "전국 순회공연"],
      ["뮤직비디오 촬영", "뮤직비디오 녹화"], ["팬미팅", "팬 모임"], ["정기 연주회", "정기 공연"]]),
    ("정치", "의원", "정치인",
     [(["정부", "정부 당국"], None), (["국회", "의회"], None), (["시청", "시 당국"], None)],
     [["부동산 대책", "주택 대책"], ["새해 예산안", "내년도 예산안"], ["선거 제도 개편", "선거제 개편"],
      ["실태 조사", "현황 조사"], ["공청회", "공개 토론회"], ["지역 개발 계획", "지역 발전 계획"]]),
    ("과학", "교수", "과학자",
     [(["새봄대학교 연구팀", "새봄대 연구진"], None), (["국립과학원", "과학원"], "연구 기관"),
      (["미래에너지연구소", "미래에너지 연구소"], "연구소")],
     [["연구 과제", "연구 사업"], ["인공위성 발사", "위성 발사"], ["공동 연구", "협동 연구"],
      ["국제 학술 대회", "국제 학회"], ["신약 임상시험", "신약 임상 시험"], ["기후 관측 사업", "기후 관측 프로젝트"]]),
    ("경제", "대표", "기업인",
     [(["한빛전자", "한빛전자 측"], "전자 기업"), (["다온자동차", "다온차"], "자동차 회사"),
      (["하늘항공", "하늘항공사"], "항공사")],
     [["신제품 출시", "새 제품 출시"], ["전기차 생산", "전기 자동차 생산"], ["구조조정", "구조 개편"],
      ["해외 진출", "해외 시장 진출"], ["기업 인수", "인수합병"], ["채용 박람회", "채용 설명회"]]),
    ("문화", "작가", "소설가",
     [(["누리문화재단", "누리재단"], "문화 재단"), (["가람미술관", "가람 미술관"], "미술관"),
      (["청솔출판사", "청솔 출판사"], "출판사")],
     [["미술 전시회", "미술 전시"], ["영화제", "영화 축제"], ["신작 소설 출간", "새 소설 출간"],
      ["문학상 시상식", "문학상 시상 행사"], ["영화 촬영", "영화 제작"], ["전통 공연", "전통 예술 공연"]]),
]


def _event_topic_vocab(index: int) -> dict[str, Groups]:
    _, role, _, orgs, objects = _EVENT_TOPICS[index]
    people = [[f"{name} {role}", name] for name in _NAMES[index * 20:(index + 1) * 20]]
    return {"subject": [list(g) for g, _ in orgs] + people, "object": objects}


# Captions: (synonyms, hypernym phrase for entailment). Topic 0 people, topic 1 animals.
_CAPTION_PEOPLE = [["한 남자", "남자"], ["한 여자", "여자"], ["한 아이", "어린아이"], ["한 소년", "남자아이"],
                   ["한 소녀", "여자아이"], ["두 사람", "두 명의 사람"], ["한 노인", "할아버지"]]
_CAPTION_PEOPLE_MODS = [[""], ["빨간 옷을 입은", "빨간색 옷을 입은"], ["모자를 쓴", "모자를 착용한"],
                        ["안경을 쓴", "안경을 낀"], ["검은 옷을 입은", "검정 옷을 입은"], ["웃고 있는", "미소 짓는"],
                        ['"환영합니다"라고 적힌 팻말을 든', '"환영합니다" 팻말을 든']]
_CAPTION_PEOPLE_ACTS = [
    (["기타를 치고", "기타를 연주하고"], "악기를 연주하고"), (["피아노를 치고", "피아노를 연주하고"], "악기를 연주하고"),
    (["공을 차고", "축구공을 차고"], "운동을 하고"), (["양파를 썰고", "양파를 자르고"], "요리를 하고"),
    (["책을 읽고", "책을 보고"], "무언가를 읽고"), (["자전거를 타고"], "운동을 하고"),
    (["노래를 부르고", "노래하고"], "소리를 내고"), (["음식을 먹고", "밥을 먹고"], "식사를 하고"),
    (["춤을 추고"], "몸을 움직이고"), (["사진을 찍고", "사진을 촬영하고"], "카메라를 사용하고"),
    (["그림을 그리고"], "그림 작업을 하고"), (["설거지를 하고", "그릇을 닦고"], "집안일을 하고"),
    (["전화를 하고", "통화를 하고"], "누군가와 이야기하고"), (["잠을 자고", "자고"], "쉬고"),
]
_CAPTION_ANIMALS = [["강아지", "작은 개"], ["고양이", "고양이 한 마리"], ["말", "말 한 마리"], ["새", "작은 새"]]
_CAPTION_ANIMAL_MODS = [[""], ["갈색", "갈색의"], ["하얀", "흰"], ["검은", "까만"]]
_CAPTION_ANIMAL_ACTS = [
    (["달리고", "뛰어가고"], "움직이고"), (["물을 마시고", "물을 먹고"], "무언가를 마시고"),
    (["공을 쫓고", "공을 따라가고"], "놀고"), (["먹이를 먹고", "사료를 먹고"], "무언가를 먹고"),
    (["장난을 치고", "놀고"], "움직이고"), (["잠을 자고", "자고"], "쉬고"),
]
# (synonyms, outdoors?) - None where a place could be either.
_CAPTION_PLACES = [
    (["공원", "공원 안"], True), (["해변", "바닷가"], True), (["부엌", "주방"], False), (["거리", "길거리"], True),
    (["무대 위", "무대"], None), (["방 안", "방"], False), (["잔디밭", "풀밭"], True), (["수영장"], None),
    (["눈밭", "눈 덮인 들판"], True), (["식당", "음식점"], False),
]

# Forum opinions: quality groups carry a polarity for NLI.
_FORUM_OBJECTS = [["이번 정책", "이 정책"], ["그 영화", "해당 영화"], ["새 휴대폰", "새 스마트폰"], ["그 식당", "그 음식점"],
                  ["온라인 수업", "원격 수업"], ["대중교통", "대중교통 수단"], ["그 후보", "해당 후보"],
                  ["이 노트북", "이 랩톱"], ["주말 근무", "주말 출근"], ["그 게임", "해당 게임"]]
_FORUM_QUALITIES = [(["좋은", "괜찮은"], True), (["유용한", "쓸모 있는"], True), (["공정한", "공평한"], True),
                    (["저렴한", "값싼"], True), (["나쁜", "별로인"], False), (["비싼", "값비싼"], False),
                    (["지루한", "재미없는"], False), (["불편한", "번거로운"], False), (["위험한", "위태로운"], False),
                    (["복잡한", "까다로운"], False)]
_FORUM_DEGREES = [["정말", "진짜"], ["너무", "지나치게"], ["조금", "약간"], ["꽤", "상당히"]]
_FORUM_REASONS = [["가격", "비용"], ["시간", "시간 문제"], ["안전", "안전 문제"], ["품질", "질"],
                  ["디자인", "외관"], ["서비스", "응대"]]
_FORUM_STANCES = [["제 생각에는", "제가 보기에는"], ["솔직히", "솔직히 말해서"], ["개인적으로", "개인적으로는"]]

# KLUE registers: accommodation reviews, welfare policy notices, smart-home requests.
_AIRBNB_TOPICS = [
    {"aspect": [["호스트", "호스트분"], ["직원", "스태프"], ["집주인", "주인분"]],
     "quality": [["친절했습니다", "친절하셨습니다"], ["응답이 빨랐습니다", "답장이 빨랐습니다"],
                 ["불친절했습니다", "무뚝뚝했습니다"], ["세심했습니다", "배려심이 깊었습니다"]]},
    {"aspect": [["방", "객실"], ["침대", "침구"], ["화장실", "욕실"], ["주방", "부엌"]],
     "quality": [["깨끗했습니다", "청결했습니다"], ["넓었습니다", "널찍했습니다"], ["좁았습니다", "비좁았습니다"],
                 ["낡았습니다", "오래되었습니다"], ["편안했습니다", "아늑했습니다"]]},
    {"aspect": [["위치", "숙소 위치"], ["주변 환경", "동네 분위기"], ["전망", "뷰"]],
     "quality": [["좋았습니다", "훌륭했습니다"], ["조용했습니다", "한적했습니다"],
                 ["시끄러웠습니다", "소음이 심했습니다"], ["편리했습니다", "편했습니다"]]},
]
_AIRBNB_SHARED = {
    "degree": [["정말", "진짜"], ["매우", "아주"], ["너무", "무척"], ["생각보다", "예상보다"]],
    "closing": [[""], ["다시 방문하고 싶습니다", "또 오고 싶습니다"], ["추천합니다", "강력히 추천합니다"],
                ["가격 대비 만족스러웠습니다", "가성비가 좋았습니다"], ["조금 아쉬웠습니다", "약간 아쉬웠습니다"]],
}
_POLICY_VOCAB = {
    "org": [["정부", "정부 당국"], ["보건복지부", "복지부"], ["고용노동부", "노동부"], ["교육부", "교육 당국"],
            ["국토교통부", "국토부"], ["지방자치단체", "지자체"]],
    "year": [[str(y)] for y in range(2018, 2026)],
    "target": [["청년", "청년층"], ["노인", "어르신"], ["소상공인", "자영업자"], ["저소득층", "저소득 가구"],
               ["대학생", "대학 재학생"], ["신혼부부", "신혼 가구"], ["장애인", "장애인 가구"]],
    "benefit": [["월세", "주거비"], ["취업 장려금", "구직 지원금"], ["교육비", "학비"], ["의료비", "진료비"],
                ["대출 이자", "이자 비용"], ["긴급 생계비", "생계 지원금"]],
    "action": [["지원", "보조"], ["지급", "제공"], ["감면", "경감"]],
    "apply": [[""], ["신청은 온라인으로 가능합니다", "온라인으로 신청할 수 있습니다"],
              ["신청은 주민센터에서 받습니다", "주민센터에서 신청하면 됩니다"],
              ["자세한 내용은 누리집을 참고하세요", "자세한 사항은 홈페이지를 확인하세요"]],
}
_KQC_VOCAB = {
    "device": [["에어컨", "냉방기"], ["조명", "전등"], ["가습기"], ["공기청정기", "공기 청정기"],
               ["보일러", "난방기"], ["TV", "텔레비전"], ["로봇청소기", "로봇 청소기"]],
    "command": [["켜", "작동시켜"], ["꺼", "정지시켜"], ["예약해", "예약 설정해"], ["점검해", "확인해"]],
    "time": [["지금", "지금 바로"], ["내일 아침", "내일 오전"], ["주말에", "이번 주말에"],
             ["30분 뒤에", "삼십 분 후에"], ["퇴근 전에", "퇴근하기 전에"]],
    "room": [["거실"], ["안방"], ["작은방"], ["주방", "부엌"], ["서재"], ["아이 방", "아이방"]],
}


# --------------------------------------------------------------------------- frames and families

Frame = dict[str, int]  # "topic" -> topic index; slot -> group index; "slot!" -> pinned synonym (optional)


class _Family:
    """A sentence type: slots with synonym-group vocabularies and a renderer.

    ``anchor`` is the slot that identifies what a sentence is about; ``minor``
    slots are details whose change lowers similarity only a little.
    """

    def __init__(self, name: str, slots: tuple[str, ...], anchor: str, minor: tuple[str, ...],
                 topics: list[dict[str, Groups]], shared: dict[str, Groups],
                 render: Callable[["_Family", Frame, random.Random, int], str]) -> None:
        self.name, self.slots, self.anchor, self.minor = name, slots, anchor, minor
        self.topics, self.shared, self._render = topics, shared, render

    def groups(self, frame: Frame, slot: str) -> Groups:
        return self.topics[frame["topic"]].get(slot) or self.shared[slot]

    def word(self, frame: Frame, slot: str, rng: random.Random) -> str:
        forms = self.groups(frame, slot)[frame[slot]]
        forced = frame.get(slot + "!")  # set by the corpus sweep to pin one surface form
        return forms[forced] if forced is not None else rng.choice(forms)

    def sample(self, rng: random.Random, topic: int | None = None) -> Frame:
        frame: Frame = {"topic": rng.randrange(len(self.topics)) if topic is None else topic}
        for slot in self.slots:
            frame[slot] = rng.randrange(len(self.groups(frame, slot)))
        return frame

    def render(self, frame: Frame, rng: random.Random, style: int = 0) -> str:
        return self._render(self, frame, rng, style)

    def _change(self, frame: Frame, slot: str, rng: random.Random) -> None:
        n = len(self.groups(frame, slot))
        i = rng.randrange(n - 1)
        frame[slot] = i if i < frame[slot] else i + 1

    def variant(self, frame: Frame, level: int, rng: random.Random) -> Frame:
        """A frame sharing the amount of meaning that the similarity level (0-5) stands for."""
        new = dict(frame)
        rest = [s for s in self.slots if s != self.anchor]
        if level == 5:
            return new
        if level == 4:
            self._change(new, rng.choice(self.minor), rng)
        elif level == 3:
            core = [s for s in rest if s not in self.minor]
            first = rng.choice(core)
            second = rng.choice([s for s in rest if s != first])
            for slot in (first, second):
                self._change(new, slot, rng)
        elif level == 2:
            for slot in rest:
                self._change(new, slot, rng)
        elif level == 1:
            keep = rng.choice(rest)
            for slot in self.slots:
                if slot != keep:
                    self._change(new, slot, rng)
        else:
            if len(self.topics) > 1:
                new["topic"] = rng.choice([t for t in range(len(self.topics)) if t != frame["topic"]])
            for slot in self.slots:
                if slot in self.topics[new["topic"]] and new["topic"] != frame["topic"]:
                    new[slot] = rng.randrange(len(self.groups(new, slot)))
                else:
                    self._change(new, slot, rng)
        return new


def _past(stem: str, rng: random.Random) -> str:
    return stem + rng.choice(["하였다", "했다"])


def _render_event(fam: _Family, f: Frame, rng: random.Random, style: int) -> str:
    s, year, place = fam.word(f, "subject", rng), fam.word(f, "year", rng) + "년", fam.word(f, "place", rng)
    obj, stem = fam.word(f, "object", rng), fam.word(f, "action", rng)
    if style == 1:  # news headline: terse, comma after the subject, quoted titles
        o = f"'{obj}'" if rng.random() < 0.35 else obj
        loc = rng.choice([f"{place}서", f"{place}에서"])
        form = rng.randrange(5)
        if form == 4:
            return f'{s} "{year} {loc} {o} {stem}"'
        if form >= 2:
            return f"{s}, {loc} {year} {o} {stem}"
        return f"{s}, {year} {loc} {o} {stem}"
    verb = _past(stem, rng)
    yr = rng.choice([year + "에", year])
    return rng.choice([
        f"{_p(s, 'topic')} {yr} {place}에서 {_p(obj, 'obj')} {verb}.",
        f"{_p(s, 'topic')} {place}에서 {year}에 {_p(obj, 'obj')} {verb}.",
        f"{year}에 {_p(s, 'subj')} {place}에서 {_p(obj, 'obj')} {verb}.",
        f"{yr} {place}에서 {_p(s, 'topic')} {_p(obj, 'obj')} {verb}.",
    ])


def _render_caption(fam: _Family, f: Frame, rng: random.Random, style: int) -> str:
    mod, subj = fam.word(f, "modifier", rng), fam.word(f, "subject", rng)
    place, act = fam.word(f, "place", rng), fam.word(f, "activity", rng)
    who = _p(f"{mod} {subj}" if mod else subj, "subj")
    if rng.random() < 0.6:
        return f"{who} {place}에서 {act} 있다."
    return f"{place}에서 {who} {act} 있다."


def _render_forum(fam: _Family, f: Frame, rng: random.Random, style: int) -> str:
    stance, reason = fam.word(f, "stance", rng), fam.word(f, "reason", rng) + " 때문에"
    obj, degree, quality = fam.word(f, "object", rng), fam.word(f, "degree", rng), fam.word(f, "quality", rng)
    ending = rng.choice(["것 같아요.", "것 같습니다."])
    r = rng.random()
    if r < 0.1:  # reported speech: balanced quotes inside the sentence
        return f'{stance} {reason} "{_p(obj, "topic")} {degree} {quality} 것 같다"는 생각이 들어요.'
    if r < 0.55:
        return f"{stance} {reason} {_p(obj, 'topic')} {degree} {quality} {ending}"
    if r < 0.8:
        return f"{stance}, {_p(obj, 'topic')} {reason} {degree} {quality} {ending}"
    return f"{stance} {_p(obj, 'topic')} {reason} {degree} {quality} {ending}"


def _render_airbnb(fam: _Family, f: Frame, rng: random.Random, style: int) -> str:
    aspect, degree = fam.word(f, "aspect", rng), fam.word(f, "degree", rng)
    quality, closing = fam.word(f, "quality", rng), fam.word(f, "closing", rng)
    lead = rng.choice(["", "", "무엇보다 ", "무엇보다도, "])
    text = f"{lead}{_p(aspect, rng.choice(['topic', 'subj']))} {degree} {quality}."
    return f"{text} {closing}." if closing else text


def _render_policy(fam: _Family, f: Frame, rng: random.Random, style: int) -> str:
    org, year, target = fam.word(f, "org", rng), fam.word(f, "year", rng) + "년부터", fam.word(f, "target", rng)
    benefit, act, apply = fam.word(f, "benefit", rng), fam.word(f, "action", rng), fam.word(f, "apply", rng)
    verb = act + rng.choice(["합니다", "할 예정입니다", "하기로 했습니다"])
    text = rng.choice([
        f"{_p(org, 'topic')} {year} {target}에게 {_p(benefit, 'obj')} {verb}.",
        f"{year} {_p(org, 'subj')} {target}에게 {_p(benefit, 'obj')} {verb}.",
        f"{_p(org, 'topic')} {target}에게 {year} {_p(benefit, 'obj')} {verb}.",
    ])
    return f"{text} {apply}." if apply else text


def _render_kqc(fam: _Family, f: Frame, rng: random.Random, style: int) -> str:
    time, room, device = fam.word(f, "time", rng), fam.word(f, "room", rng), fam.word(f, "device", rng)
    cmd = fam.word(f, "command", rng)
    ending = rng.choice(["줄 수 있어?", "줘.", "주세요.", "줄래?"])
    if rng.random() < 0.6:
        return f"{time} {room} {device} {cmd} {ending}"
    return f"{room} {device} {time} {cmd} {ending}"


def _groups_of(entries: list) -> Groups:
    return [list(syn) for syn, _ in entries]


EVENT = _Family("event", ("subject", "year", "place", "object", "action"), "subject", ("year", "place"),
                [_event_topic_vocab(i) for i in range(len(_EVENT_TOPICS))],
                {"year": _YEARS, "place": _PLACES, "action": _ACTIONS}, _render_event)
CAPTION = _Family("caption", ("subject", "modifier", "place", "activity"), "subject", ("modifier", "place"),
                  [{"subject": _CAPTION_PEOPLE, "modifier": _CAPTION_PEOPLE_MODS,
                    "activity": _groups_of(_CAPTION_PEOPLE_ACTS)},
                   {"subject": _CAPTION_ANIMALS, "modifier": _CAPTION_ANIMAL_MODS,
                    "activity": _groups_of(_CAPTION_ANIMAL_ACTS)}],
                  {"place": _groups_of(_CAPTION_PLACES)}, _render_caption)
FORUM = _Family("forum", ("object", "quality", "degree", "reason", "stance"), "object", ("degree", "reason", "stance"),
                [{}], {"object": _FORUM_OBJECTS, "quality": _groups_of(_FORUM_QUALITIES), "degree": _FORUM_DEGREES,
                       "reason": _FORUM_REASONS, "stance": _FORUM_STANCES}, _render_forum)
AIRBNB = _Family("airbnb", ("aspect", "quality", "degree", "closing"), "aspect", ("degree", "closing"),
                 _AIRBNB_TOPICS, _AIRBNB_SHARED, _render_airbnb)
POLICY = _Family("policy", ("org", "year", "target", "benefit", "action", "apply"), "org", ("year", "apply"),
                 [{}], _POLICY_VOCAB, _render_policy)
KQC = _Family("paraKQC", ("device", "command", "time", "room"), "device", ("time", "room"),
              [{}], _KQC_VOCAB, _render_kqc)


# --------------------------------------------------------------------------- pairs and scores

def _annotate(level: int, n: int, rng: random.Random) -> list[int]:
    """Integer 0-5 scores of ``n`` simulated annotators around the level's similarity."""
    if level == 5:
        target = 5.0 - rng.uniform(0.0, 0.4)
    elif level == 0:
        target = rng.uniform(0.0, 0.4)
    else:
        target = level + rng.uniform(-0.35, 0.35)
    return [min(5, max(0, round(target + rng.gauss(0.0, 0.6)))) for _ in range(n)]


def _make_pair(fam: _Family, level: int, rng: random.Random, seen: set[tuple[str, str]]) -> tuple[str, str]:
    """A new sentence pair whose frames share what ``level`` stands for; unseen in either order."""
    for _ in range(200):
        style = 1 if fam is EVENT and rng.random() < 0.6 else 0
        frame = fam.sample(rng)
        other = fam.variant(frame, level, rng)
        a = fam.render(frame, rng, style)
        b = fam.render(other, rng, style)
        # Paraphrases should usually differ on the surface, as in the real data.
        for _ in range(4):
            if a != b or level < 5:
                break
            b = fam.render(other, rng, style)
        if (a, b) not in seen and (b, a) not in seen:
            seen.add((a, b))
            return a, b
    raise RuntimeError(f"could not find a new {fam.name} pair at level {level}")


def _balanced_levels(n: int, rng: random.Random) -> list[int]:
    levels = [i % 6 for i in range(n)]
    rng.shuffle(levels)
    return levels


# KorSTS (genre, filename, year) sources per family, in file order.
_STS_SOURCES = {
    "caption": [("main-captions", "MSRvid", "2012train"), ("main-captions", "MSRvid", "2012test"),
                ("main-captions", "images", "2014"), ("main-captions", "images", "2015")],
    "event": [("main-news", "headlines", str(y)) for y in range(2013, 2017)],
    "forum": [("main-forum", "deft-forum", "2014"), ("main-forum", "answers-forums", "2015")],
}
_STS_FAMILIES = [(CAPTION, "caption", 0.40), (EVENT, "event", 0.35), (FORUM, "forum", 0.25)]


def _korsts_split(n: int, rng: random.Random, seen: set[tuple[str, str]]) -> list[list[str]]:
    """Rows (7 fields each) of one KorSTS split, grouped by source like the real files."""
    by_source: dict[tuple[str, str, str], list[tuple[str, str, str]]] = {
        src: [] for key in ("caption", "event", "forum") for src in _STS_SOURCES[key]}
    counts = [round(n * w) for _, _, w in _STS_FAMILIES]
    counts[-1] = n - sum(counts[:-1])
    for (fam, key, _), count in zip(_STS_FAMILIES, counts):
        for level in _balanced_levels(count, rng):
            a, b = _make_pair(fam, level, rng, seen)
            votes = _annotate(level, 5, rng)
            # The mean of five integer votes is a multiple of 0.2, so the 3-decimal text is exact.
            score = f"{sum(votes) / len(votes):.3f}"
            by_source[rng.choice(_STS_SOURCES[key])].append((score, a, b))
    rows: list[list[str]] = []
    for (genre, filename, year), items in by_source.items():
        ident = rng.randint(0, 20)
        for score, a, b in items:
            rows.append([genre, filename, year, f"{ident:04d}", score, a, b])
            ident += rng.randint(1, 4)
    _plant_quote_traps(rows, rng)
    return rows


def _plant_quote_traps(rows: list[list[str]], rng: random.Random, k: int = 4) -> None:
    """Open an unclosed ``"`` at the start of some forum sentences, as scraped forum text does.

    A reader with default CSV quoting then swallows the following tab and line
    breaks up to the next ``"``, merging rows; the real parser splits on tabs only.
    The last row is skipped because there is no line break after it to swallow.
    """
    candidates = [i for i, row in enumerate(rows[:-1])
                  if row[0] == "main-forum" and '"' not in row[5] and '"' not in row[6]]
    for i in sorted(rng.sample(candidates, min(k, len(candidates)))):
        rows[i][5] = '"' + rows[i][5]


def _korsts_text(rows: list[list[str]], final_newline: bool) -> str:
    body = "\n".join([KORSTS_HEADER] + ["\t".join(r) for r in rows])
    return body + "\n" if final_newline else body


# --------------------------------------------------------------------------- KLUE-STS

_KLUE_FAMILIES = [(AIRBNB, "airbnb-rtt", "airbnb-sampled"), (POLICY, "policy-rtt", "policy-sampled"),
                  (KQC, "paraKQC-para", "paraKQC-sampled")]


def _klue_records(n: int, rng: random.Random) -> list[dict]:
    plan = [(i % 3, (i // 3) % 6) for i in range(n)]
    rng.shuffle(plan)
    seen: set[tuple[str, str]] = set()
    records = []
    for index, (fam_index, level) in enumerate(plan):
        fam, close, sampled = _KLUE_FAMILIES[fam_index]
        a, b = _make_pair(fam, level, rng, seen)
        k = rng.randint(3, 7)
        votes = _annotate(level, k, rng)
        real = sum(votes) / k
        records.append({
            "guid": f"klue-sts-v1_dev_{index:05d}",
            # Round-trip translations and paraphrases are the close pairs; sampled ones the far pairs.
            "source": close if level >= 3 else sampled,
            "sentence1": a,
            "sentence2": b,
            "labels": {"label": round(real, 1), "real-label": real, "binary-label": 1 if real >= 3.0 else 0},
            "annotations": {
                "agreement": ":".join(str(votes.count(v)) for v in range(6)),
                "annotators": [f"{i:02d}" for i in rng.sample(range(20), k)],
                "annotations": votes,
            },
        })
    return records


# --------------------------------------------------------------------------- KorNLI

def _nli_event(rng: random.Random) -> tuple[str, dict[str, list[str]]]:
    f = EVENT.sample(rng)
    premise = EVENT.render(f, rng, 0)
    w = lambda slot: EVENT.word(f, slot, rng)  # noqa: E731 - a fresh synonym on each call
    s, o, p, y = w("subject"), w("object"), w("place"), w("year") + "년"
    stem = w("action")
    hyps = {
        "entailment": [f"{_p(w('subject'), 'topic')} {_p(w('object'), 'obj')} {_past(w('action'), rng)}.",
                       f"{_p(s, 'topic')} {y}에 {p}에 있었다.",
                       f"{y}에 {p}에서 {_p(o, 'and')} 관련된 일이 있었다."],
        "contradiction": [f"{_p(s, 'topic')} {_p(o, 'obj')} {stem}하지 않았다.",
                          f"{_p(s, 'topic')} {p}에 한 번도 간 적이 없다.",
                          f"{y}에 {_p(s, 'topic')} 아무 활동도 하지 않았다."],
        "neutral": [f"{_p(s, 'topic')} {_p(o, 'obj')} 통해 큰 호평을 받았다.",
                    f"{_p(s, 'topic')} 이듬해에도 {_p(p, 'obj')} 다시 찾았다.",
                    f'{_p(s, "topic")} "{_p(o, "topic")} 성공적이었다"고 밝혔다.',
                    f"{o}에는 많은 사람이 참석하였다.",
                    f"{_p(s, 'topic')} '{o}' 준비에 3년을 들였다."],
    }
    return premise, hyps


def _nli_forum(rng: random.Random) -> tuple[str, dict[str, list[str]]]:
    f = FORUM.sample(rng)
    premise = FORUM.render(f, rng)
    obj = FORUM.word(f, "object", rng)
    good = _FORUM_QUALITIES[f["quality"]][1]
    judged, opposite = ("긍정적으로", "부정적으로") if good else ("부정적으로", "긍정적으로")
    hyps = {
        "entailment": [f"화자는 {_p(obj, 'obj')} {judged} 평가한다.",
                       f"화자는 {obj}에 대해 분명한 의견을 가지고 있다."],
        "contradiction": [f"화자는 {_p(obj, 'obj')} {opposite} 평가한다.",
                          f"화자는 {obj}에 대해 아무런 의견이 없다."],
        "neutral": [f"화자는 {_p(obj, 'obj')} 직접 경험해 본 적이 있다.",
                    "화자의 친구들도 같은 생각을 하고 있다.",
                    f"화자는 '{obj}'에 대한 글을 자주 쓴다."],
    }
    return premise, hyps


def _nli_caption(rng: random.Random) -> tuple[str, dict[str, list[str]]]:
    f = CAPTION.sample(rng)
    premise = CAPTION.render(f, rng)
    subj, place = CAPTION.word(f, "subject", rng), CAPTION.word(f, "place", rng)
    act = CAPTION.word(f, "activity", rng)
    acts = _CAPTION_PEOPLE_ACTS if f["topic"] == 0 else _CAPTION_ANIMAL_ACTS
    hypernym = acts[f["activity"]][1]
    outdoors = _CAPTION_PLACES[f["place"]][1]
    other_place = rng.choice([g for i, (g, _) in enumerate(_CAPTION_PLACES) if i != f["place"]])[0]
    sleeping = acts[f["activity"]][0][0] == "잠을 자고"
    other_act = "달리고" if sleeping else "잠을 자고"
    kind = "사람" if f["topic"] == 0 else "동물"
    hyps = {
        "entailment": [f"{_p(subj, 'subj')} {hypernym} 있다.", f"{_p(kind, 'subj')} {place}에 있다."],
        "contradiction": [f"{_p(subj, 'subj')} {other_place}에서 {other_act} 있다.", f"아무도 {place}에 없다."],
        "neutral": [f"{_p(subj, 'subj')} 친구를 기다리며 {act} 있다.", f"{_p(subj, 'subj')} {place}에 처음 왔다.",
                    f"{_p(subj, 'topic')} 매우 즐거워 보인다."],
    }
    if outdoors is not None:
        here, there = ("야외", "실내") if outdoors else ("실내", "야외")
        hyps["entailment"].append(f"{_p(subj, 'subj')} {here}에 있다.")
        hyps["contradiction"].append(f"{_p(subj, 'subj')} {there}에 있다.")
    return premise, hyps


def _nli_rows(makers: list[Callable[[random.Random], tuple[str, dict[str, list[str]]]]],
              rng: random.Random, seen: set[str], n_na: int) -> list[tuple[str, str, str]]:
    """Rows grouped per premise: one hypothesis of each label, sometimes a second entailment
    or contradiction (so that "last one wins" readers differ from "all pairs" readers)."""
    groups: list[list[tuple[str, str, str]]] = []
    for make in makers:
        premise, hyps = make(rng)
        while premise in seen:
            premise, hyps = make(rng)
        seen.add(premise)
        labels = ["entailment", "neutral", "contradiction"]
        r = rng.random()
        if r < 0.12:
            labels.append("entailment")
        elif r < 0.24:
            labels.append("contradiction")
        rng.shuffle(labels)
        picks = {lab: rng.sample(hyps[lab], labels.count(lab)) for lab in ("entailment", "neutral", "contradiction")}
        groups.append([(premise, picks[lab].pop(), lab) for lab in labels])
    # A missing translation is published as the literal "n/a"; as the group's last row it
    # is the hypothesis a last-one-wins reader keeps, so the triplet must be dropped.
    for i in sorted(rng.sample(range(len(groups)), n_na)):
        groups[i].append((groups[i][0][0], "n/a", rng.choice(["entailment", "contradiction"])))
    return [row for group in groups for row in group]


def _nli_text(rows: list[tuple[str, str, str]]) -> str:
    return "\n".join([KORNLI_HEADER] + ["\t".join(r) for r in rows]) + "\n"


# --------------------------------------------------------------------------- corpus

# Organisations with a kind ("... 설립된 출판사이다"); government bodies have none.
_FOUNDED = [(g, k) for topic in _EVENT_TOPICS for g, k in topic[3] if k]


def _fact_sentence(rng: random.Random) -> str:
    t = rng.randrange(len(_EVENT_TOPICS))
    _, role, occupation, orgs, objects = _EVENT_TOPICS[t]
    name = rng.choice(_NAMES[t * 20:(t + 1) * 20])
    place = rng.choice(_PLACES)[0]
    year = rng.randrange(1950, 2024)
    org_names, _ = rng.choice(orgs)
    org = rng.choice(org_names)
    obj = rng.choice(rng.choice(objects))
    form = rng.randrange(9)
    if form == 0:
        return f"{_p(place, 'topic')} {_PLACE_FACTS[place]}이다."
    if form == 1:
        return f"{_p(name, 'topic')} {year}년 {place}에서 태어났다."
    if form == 2:
        return f"{_p(name, 'topic')} 대한민국의 {occupation}이다."
    if form == 3:
        return f"{_p(name, 'topic')} {year}년에 {org}에 {rng.choice(['합류하였다', '입단하였다', '들어갔다'])}."
    if form == 4:
        return f"그 {_p(role, 'topic')} {year}년에 {org}에 합류하였다."
    if form == 5:
        g, k = rng.choice(_FOUNDED)
        return f"{_p(rng.choice(g), 'topic')} {year}년 {place}에서 설립된 {k}이다."
    if form == 6:
        g, _ = rng.choice(_FOUNDED)
        return f"{rng.choice(g)}의 본사는 {place}에 있다."
    if form == 7:
        return f"{year}년 {place}에서 {_p(obj, 'subj')} 진행되었다."
    return f"{_p(name, 'topic')} {year}년에 {_p(obj, 'dir')} 이름을 알렸다."


def _long_sentence(rng: random.Random) -> str:
    f = EVENT.sample(rng)
    s, p, o = EVENT.word(f, "subject", rng), EVENT.word(f, "place", rng), EVENT.word(f, "object", rng)
    year = int(EVENT.word(f, "year", rng))
    g = EVENT.variant(f, 2, rng)
    conn = EVENT.word(f, "action", rng) + rng.choice(["하였으며", "했으며", "하였고", "했고"])
    text = (f"{_p(s, 'topic')} {year}년에 {p}에서 {_p(o, 'obj')} {conn}, 이듬해인 {year + 1}년에는 "
            f"{EVENT.word(g, 'place', rng)}에서 {_p(EVENT.word(g, 'object', rng), 'obj')} "
            f"{_past(EVENT.word(g, 'action', rng), rng)}")
    if rng.random() < 0.4:
        h = EVENT.variant(f, 2, rng)
        text = (text[:-1] + "으며, " + f"{year + 3}년에는 {_p(EVENT.word(h, 'object', rng), 'obj')} "
                f"{_past(EVENT.word(h, 'action', rng), rng)}")
    return text + "."


def _caption_sentence(rng: random.Random) -> str:
    f = CAPTION.sample(rng)
    if rng.random() < 0.7:
        return CAPTION.render(f, rng)
    # The generic activity words ("악기를 연주하고") otherwise occur only in NLI hypotheses.
    acts = _CAPTION_PEOPLE_ACTS if f["topic"] == 0 else _CAPTION_ANIMAL_ACTS
    who = _p(CAPTION.word(f, "subject", rng), "subj")
    return f"{who} {CAPTION.word(f, 'place', rng)}에서 {acts[f['activity']][1]} 있다."


def _nli_hypothesis(rng: random.Random) -> str:
    # NLI hypotheses use a few words no other template has; a tokenizer trained on
    # the corpus should still see them.
    _, hyps = rng.choice([_nli_event, _nli_forum, _nli_caption])(rng)
    return rng.choice(hyps[rng.choice(["entailment", "neutral", "contradiction"])])


def _vocabulary_sweep(rng: random.Random) -> list[str]:
    """Sentences that together use every surface form of every vocabulary entry.

    Random sampling alone can miss a rare synonym, and then a tokenizer trained on
    the corpus would not cover some benchmark sentence; this makes coverage hold
    for every seed.
    """
    lines = []
    for fam in (EVENT, CAPTION, FORUM, AIRBNB, POLICY, KQC):
        for topic in range(len(fam.topics)):
            for slot in fam.slots:
                if topic and slot not in fam.topics[topic]:
                    continue  # shared slots are swept with topic 0
                for index, forms in enumerate(fam.groups({"topic": topic}, slot)):
                    for form in range(len(forms)):
                        frame = fam.sample(rng, topic)
                        frame[slot], frame[slot + "!"] = index, form
                        lines.append(fam.render(frame, rng, 0))
    for topic, acts in enumerate((_CAPTION_PEOPLE_ACTS, _CAPTION_ANIMAL_ACTS)):
        for _, hypernym in acts:
            who = _p(CAPTION.word(CAPTION.sample(rng, topic), "subject", rng), "subj")
            lines.append(f"{who} {hypernym} 있다.")
    for make in (_nli_event, _nli_forum, _nli_caption):
        for _ in range(8):
            _, hyps = make(rng)
            lines.extend(h for label in ("entailment", "neutral", "contradiction") for h in hyps[label])
    return lines


def _corpus_lines(n: int, rng: random.Random) -> list[str]:
    makers: list[tuple[float, Callable[[], str]]] = [
        (0.30, lambda: EVENT.render(EVENT.sample(rng), rng, 0)),
        (0.29, lambda: _fact_sentence(rng)),
        (0.05, lambda: _nli_hypothesis(rng)),
        (0.07, lambda: _long_sentence(rng)),
        (0.08, lambda: _caption_sentence(rng)),
        (0.06, lambda: FORUM.render(FORUM.sample(rng), rng)),
        (0.06, lambda: AIRBNB.render(AIRBNB.sample(rng), rng)),
        (0.05, lambda: POLICY.render(POLICY.sample(rng), rng)),
        (0.04, lambda: KQC.render(KQC.sample(rng), rng)),
    ]
    lines: list[str] = []
    seen: set[str] = set()
    for line in _vocabulary_sweep(rng):
        if line not in seen:
            seen.add(line)
            lines.append(line)
    attempts = 0
    while len(lines) < n:
        attempts += 1
        if attempts > 50 * n:
            raise RuntimeError("vocabularies too small for the requested corpus size")
        r, acc = rng.random(), 0.0
        for weight, make in makers:
            acc += weight
            if r < acc:
                break
        line = make()
        if line not in seen and len(line) <= 120:
            seen.add(line)
            lines.append(line)
    # Interleave the sweep with the sampled sentences, as a real corpus is not sorted by word.
    rng.shuffle(lines)
    return lines


# --------------------------------------------------------------------------- public API

def write_smoke_sources(out_dir: Path | str, *, seed: int = 0) -> dict[str, Path]:
    """Write all smoke source files into ``out_dir`` (created if needed); return ``{name: path}``.

    Files (names as in :data:`FILE_NAMES`), all UTF-8:

    * ``corpus`` (``korean_wiki_smoke.txt``): 3000 unique sentences, one per line, final newline.
    * ``korsts_train`` / ``korsts_dev`` / ``korsts_test`` (``sts-*.tsv``): 720 / 300 / 300 KorSTS
      rows with the 7-column header; scores ``x.xxx`` in [0, 5]; dev and test without a final
      newline; a few sentences open an unclosed ``"``.
    * ``klue_dev`` (``klue-sts-v1.1_dev.json``): 300 KLUE-STS records with 3-7 simulated annotators.
    * ``kornli_mnli`` / ``kornli_snli`` (``multinli.train.ko.tsv`` / ``snli_1.0_train.ko.tsv``):
      KorNLI rows for 280 / 200 premises, each with an entailment, a neutral and a
      contradiction (sometimes a second entailment or contradiction), plus three ``n/a``
      hypotheses in all.

    The bytes depend only on ``seed``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # One generator per file, so changing one data set leaves the others' bytes alone.
    rngs = {name: random.Random(seed * 1000 + i) for i, name in enumerate(FILE_NAMES)}
    texts: dict[str, str] = {"corpus": "\n".join(_corpus_lines(CORPUS_SIZE, rngs["corpus"])) + "\n"}

    seen_pairs: set[tuple[str, str]] = set()  # shared so train/dev/test pairs stay distinct
    for name, size in STS_SIZES.items():
        rows = _korsts_split(size, rngs[name], seen_pairs)
        texts[name] = _korsts_text(rows, final_newline=name == "korsts_train")

    texts["klue_dev"] = json.dumps(_klue_records(KLUE_SIZE, rngs["klue_dev"]), ensure_ascii=False, indent=4)

    premises: set[str] = set()
    mnli_rng = rngs["kornli_mnli"]
    mnli_makers = [_nli_event] * MNLI_EVENT_PREMISES + [_nli_forum] * MNLI_FORUM_PREMISES
    mnli_rng.shuffle(mnli_makers)
    texts["kornli_mnli"] = _nli_text(_nli_rows(mnli_makers, mnli_rng, premises, n_na=2))
    texts["kornli_snli"] = _nli_text(_nli_rows([_nli_caption] * SNLI_PREMISES, rngs["kornli_snli"], premises, n_na=1))

    paths: dict[str, Path] = {}
    for name, file_name in FILE_NAMES.items():
        path = out / file_name
        path.write_bytes(texts[name].encode("utf-8"))
        paths[name] = path
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.smoke_data",
                                     description="Write small synthetic Korean corpus/KorSTS/KLUE-STS/KorNLI files.")
    parser.add_argument("out_dir", type=Path, help="folder to write into (created if needed)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    args = parser.parse_args(argv)
    for name, path in write_smoke_sources(args.out_dir, seed=args.seed).items():
        print(f"{name}\t{path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
