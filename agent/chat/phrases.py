"""The phrase lexicon of the deterministic chat parser (`agent.chat.parse`): word tables and the patterns
for intents, negation and lifting cues, years and decades, k, positions, seen items and descriptions.

Every pattern is linear in the text length: no nested quantifiers over overlapping character classes,
and every two-part search is split into two searches by the parser.
"""

from __future__ import annotations

import re

WORD_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                 "nine": 9, "ten": 10, "a couple of": 2, "a dozen": 12}
# Chat spellings read as their words before parsing ("pls" → "please", "gimme" → "give me"), lower-case
# tokens only; and letters repeated three or more times are read once ("loooved" → "loved").
SLANG = {"u": "you", "ur": "your", "pls": "please", "plz": "please", "plse": "please", "rn": "right now",
         "recs": "recommendations", "rec": "recommendation", "reccomend": "recommend", "recomend": "recommend",
         "reccommend": "recommend", "moive": "movie", "moives": "movies", "movei": "movie", "wat": "what",
         "gimme": "give me", "lemme": "let me", "tonite": "tonight", "tho": "though", "thx": "thanks",
         "ty": "thanks", "bc": "because", "cuz": "because", "smth": "something", "sth": "something",
         "abt": "about", "w/o": "without", "w/": "with", "dont": "don't", "cant": "can't", "im": "i'm",
         "ive": "i've", "id": "i'd", "whats": "what's", "why'd": "why did", "how'd": "how did"}
SLANG_TOKEN = re.compile(r"(?<![\w'/])(?:" + "|".join(re.escape(k) for k in sorted(SLANG, key=len, reverse=True))
                         + r")(?![\w'/])")
REPEATS = re.compile(r"([a-z])\1{2,}")
ORDINALS = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4,
             "fifth": 5, "5th": 5, "sixth": 6, "6th": 6, "seventh": 7, "7th": 7, "eighth": 8, "8th": 8,
             "ninth": 9, "9th": 9, "tenth": 10, "10th": 10}
DECADE_WORDS = {"twenties": 1920, "thirties": 1930, "forties": 1940, "fifties": 1950, "sixties": 1960,
                 "seventies": 1970, "eighties": 1980, "nineties": 1990, "noughties": 2000}

WHY = re.compile(r"\bwhy\b|\bhow come\b|\bexplain\b|\bwhat made you\b|\breason for\b|"
                 r"\bhow did .{1,200}? end up\b", re.IGNORECASE)
WHY_VERB = re.compile(r"\b(?:suggest|recommend|pick|show|choose|chose|include|put|add)(?:ed|en|ing|s)?\b"
                      r"(?:\s+(?:me|us))?", re.IGNORECASE)
# What a "why" says after the title ("why is X on my list", "how come X showed up").
WHY_TAIL = re.compile(r"\s+(?:(?:is |was )?(?:in|on|doing in|doing on) (?:my|the|this|that) (?:list|picks|"
                      r"recommendations|suggestions)|in there|(?:has |have )?(?:showed|shown|show|turned|popped|ended|"
                      r"end) up(?: (?:in|on) (?:my|the) (?:list|picks))?|there|here|(?:in|on) (?:it|them)|in)\s*"
                      r"[?!.]*\s*$", re.IGNORECASE)
WHY_LEAD = re.compile(r"^\s*(?:why|explain|how come|how did|what made you (?:pick|choose|suggest|add))\b[\s,:]*"
                      r"(?:on earth\s+|the heck\s+|exactly\s+)?(?:(?:is|was|are|did (?:you|u) (?:suggest|pick|choose|"
                      r"put|add|include))\s+)?",
                      re.IGNORECASE)
POSITION = re.compile(r"\b(?:the\s+)?(?:very\s+)?(?:one\s+in\s+)?(?P<ord>first|second|third|fourth|fifth|sixth|"
                      r"seventh|eighth|ninth|tenth|1st|2nd|3rd|[4-9]th|10th)(?:\s+(?:one|title|film|movie|game|pick|"
                      r"item|suggestion|place|spot))?\b"
                      r"|(?:\bnumber|\bno\.|#|\bitem|\bpick|\btitle)\s*(?P<num>\d{1,2}|one|two|three|four|five|six|"
                      r"seven|eight|nine|ten)\b|\bthe last one\b", re.IGNORECASE)
DIFFERENT = re.compile(r"\b(?:different|something new|change of pace|switch it up|"
                       r"shake (?:it|things) up|"
                       r"out of my rut|never normally|wouldn't normally|would never|comfort zone|mix it up|"
                       r"out of my comfort zone|surprise me|not (?:like|what) (?:what )?i(?:'ve| have)? "
                       r"(?:watch|play|seen|been))", re.IGNORECASE)
INTERESTS = re.compile(r"\b(?:what (?:have|did|do) i (?:been )?(?:into|watch\w*|play\w*|lik\w*|enjoy\w*)|"
                       r"my (?:recent )?(?:interests|taste|tastes|history|habits)|interest shift|"
                       r"how (?:ha(?:s|ve)|did) my|what am i into|been into lately|describe my|"
                       r"have i been (?:watching|into|playing|enjoying|liking)|my taste (?:is|has)|"
                       r"(?:has|have|did) my (?:taste|tastes|interests) (?:changed|shifted|moved))", re.IGNORECASE)
# After a strong trigger the words are a title even when the catalogue has none like it (said back as
# unknown); after a weak one ("I loved", "like") only when they match a catalogue title.
STRONG_TRIGGER = re.compile(r"\b(?:more like|something like|anything like|stuff like|movies like|films like|"
                            r"games like|titles like|ones like|flicks like|similar to|resembling|in the vein of|"
                            r"along the lines of|as good as|reminds? me of|same vibe as|vibe of|based on|"
                            r"same league as|in the spirit of|a mix of|a cross between|close to)\s+", re.IGNORECASE)
# A title at the start of a message counts when the message goes on like this ("Heat was amazing, more
# please", "Desperado type of thing").
LEADING_TITLE_CUE = re.compile(r"\b(?:was|is|were) (?:amazing|great|awesome|fantastic|brilliant|so good|sick|"
                               r"excellent|incredible|the best)|\btype of thing|\bkind of thing|\band loved it|"
                               r"\bmore (?:like|of) (?:that|it|this)|\bin that spirit|\bwhat next|\bwhat else",
                               re.IGNORECASE)
# Titles listed together: "a mix of Heat and Ronin", "like Heat, Ronin or Ransom".
TITLE_JOIN = re.compile(r"^\s*(?:,\s*(?:and\s+|or\s+)?|and\s+|or\s+|&\s+|plus\s+)", re.IGNORECASE)
LIKE_TRIGGER = re.compile(r"\b(?:like|(?:i\s+)?(?:really\s+)?(?:loved|liked|enjoyed|adored|love|enjoy)|"
                          r"fan of|(?:just\s+)?(?:watched|finished|saw|beat|played|completed)|hooked on|into)\s+",
                          re.IGNORECASE)
QUOTED = re.compile(r"[\"“«]([^\"“”«»\n]{2,200})[\"”»]")
NOT_A_TITLE = frozenset({"something", "anything", "to", "it", "that", "this", "more", "movies",
                        "films", "games", "ones", "them", "those", "these", "stuff", "what", "watching",
                        "some", "you", "me", "i", "my", "one", "everything", "nothing", "titles",
                        "playing", "seeing", "a movie", "a film", "a game", "please", "and", "but"})
# Turning down the last list is asking for more ("not those", "none of these", "something else").
REJECT = re.compile(r"\b(?:not (?:those|these|them|that one)|none of (?:these|those|them)|something else|"
                    r"(?:show me )?(?:other|different) ones|others)\b", re.IGNORECASE)
ASK = re.compile(r"\b(?:top|picks?|recommend\w*|suggest\w*|give me|show me|find me|get me|want|looking for|"
                 r"let me see|got any|got anything|hit me|i could go for|i'm after|i am after|need|list|put on|"
                 r"best of|ideas|any good|what can i|what could i|flicks?|pics|pictures|stuff|"
                 r"something|anything|what should|any good|pick|more|another|others|ideas?|movies?|films?|"
                 r"games?|titles?|watch|play|mood for|options)\b", re.IGNORECASE)
# An explicit ask: a message that also narrows ("recommend something, but no musicals") is still a request.
FRESH_ASK = re.compile(r"\b(?:top|picks?|recommend\w*|suggest\w*|give me|show me something|find me|what should|"
                       r"something(?! else)|any good)\b", re.IGNORECASE)
REFINE_LEAD = re.compile(r"^\s*(?:no|not|nothing|none|without|only|just|older|newer|more recent|earlier|later|"
                         r"actually|instead|make (?:it|them)|how about|what about|but|and|also|skip|drop|"
                         r"remove|exclude|lose the|less|fewer|stick to|keep it)\b", re.IGNORECASE)
NEGATION = re.compile(r"\b(?:no|not|nothing|none|without|never|avoid|skip|exclude|excluding|except|minus|"
                      r"done with|stop showing|stop recommending|no longer|fed up with|hold the|can't stand|"
                      r"cannot stand|can not stand|zero|spare me|so over|i'm over|not feeling|not in the mood for|"
                      r"not into|steer clear of|stay away from|leave out|cut the|ditch the|no more|"
                      r"hate|dislike|don't|dont|do not|drop|remove|lose|stop|less|fewer|anything but|"
                      r"everything but|other than|rather than|instead of|tired of|sick of|enough)\b",
                      re.IGNORECASE)
LIFT = re.compile(r"\b(?:back on the table|don't mind|do not mind|dont mind|no longer mind|fine again|ok again|"
                  r"(?:are|is) (?:ok|okay|fine|allowed|good|welcome) (?:now|again)|allowed again|changed my mind|"
                  r"okay again|back in|are fine now|is fine now|allow|bring back|again is fine|welcome again|"
                  r"can come back|put back)\b", re.IGNORECASE)
AGAIN = re.compile(r"\bagain\b", re.IGNORECASE)
CLAUSE = re.compile(r"[,;.!?]|\bbut\b|\bthough\b|\bhowever\b|\bexcept\b|\bapart from\b|\bother than\b",
                    re.IGNORECASE)
OLDER = re.compile(r"(?<!or )(?<!not )(?<!no )\b(?:older|earlier|classic|classics|old ones|old school|vintage|"
                   r"further back|back in time|less recent)\b", re.IGNORECASE)
NEWER = re.compile(r"(?<!or )(?<!not )(?<!no )\b(?:newer|more recent|later ones|recent ones|latest|modern|less old|"
                   r"more current|fresher)\b", re.IGNORECASE)
# Words after a category that negate it within its clause ("keep horror out of it", "westerns are a no-go").
POST_NEGATION = re.compile(r"[\w' -]{0,40}?\b(?:out of it|out of this|a no-go|no-go|not for me|off the table|"
                           r"off the list|no go|need not apply|can stay away|are banned|is banned)\b", re.IGNORECASE)
SEEN = re.compile(r"\b(?:(?:include|including|even|also|with|allow)\s+(?:the\s+)?(?:ones|things|movies|films|"
                  r"games|titles|stuff)?\s*i(?:'ve| have)?\s+(?:already\s+)?(?:seen|watched|rated|played)|"
                  r"rewatch\w*|replay\w*|seen (?:is|are) fine|already seen is fine|"
                  r"(?:ok|okay|fine) to (?:show|include|recommend|repeat)(?: me)?(?: \w+){0,2} i(?:'ve| have)? "
                  r"(?:already )?(?:seen|watched|rated|played)|"
                  r"(?:even if|doesn't matter if|does not matter if|don't care if|do not care if|no matter if) "
                  r"(?:i(?:'ve| have)?|you(?:'ve| have)? already shown) (?:already )?(?:seen|watched|rated|played)|"
                  r"repeats? (?:are|is) (?:ok|okay|fine|allowed)|(?:stuff|things|ones|movies|films|games|titles) "
                  r"i(?:'ve| have)? already (?:seen|watched|rated|played))\b", re.IGNORECASE)
YEAR = r"(1[89]\d\d|20\d\d)"
BETWEEN = re.compile(rf"\b(?:between|from)\s+{YEAR}\s+(?:and|to|-|–|until)\s+{YEAR}\b|\b{YEAR}\s*[-–]\s*{YEAR}\b")
NOT_BEFORE = re.compile(rf"\b(?:not older than|no older than|no earlier than|not earlier than|not before)\s+{YEAR}\b",
                        re.IGNORECASE)
NOT_AFTER = re.compile(rf"\b(?:not newer than|no newer than|no later than|not later than|not after|up to|until|"
                       rf"through|till|<=)\s*{YEAR}\b", re.IGNORECASE)
BEFORE = re.compile(rf"\b(?:before|earlier than|older than|prior to|pre-?)\s*{YEAR}\b|<\s*{YEAR}\b", re.IGNORECASE)
AFTER = re.compile(rf"\b(?:after|later than|newer than|post-?)\s*{YEAR}\b|>\s*{YEAR}\b", re.IGNORECASE)
SINCE = re.compile(rf"\b(?:since|from)\s+{YEAR}\s+on(?:wards?)?\b|\bsince\s+{YEAR}\b|\b{YEAR}\s+on(?:wards?)\b|"
                   rf">=\s*{YEAR}\b", re.IGNORECASE)
OR_EARLIER = re.compile(rf"\b{YEAR}\s+or\s+(?:earlier|before|older)\b", re.IGNORECASE)
OR_LATER = re.compile(rf"\b{YEAR}\s+or\s+(?:later|after|newer|since)\b", re.IGNORECASE)
IN_YEAR = re.compile(rf"\b(?:in|from|of|released in|made in|year)\s+{YEAR}\b", re.IGNORECASE)
DECADE = re.compile(r"\b(?:the\s+)?(?:(?P<century>19|20)?(?P<d>\d)0'?s|'(?P<d2>\d)0s|(?P<word>twenties|thirties|"
                    r"forties|fifties|sixties|seventies|eighties|nineties|noughties))\b", re.IGNORECASE)
EARLY_LATE = re.compile(r"\b(?P<part>early|mid|late)[- ]?'?$", re.IGNORECASE)
K = re.compile(r"\b(?:top\s+)?(?P<n>\d{1,2}|one|two|three|four|five|six|seven|eight|nine|ten|a couple of|"
               r"a dozen)\s+(?:more\s+|other\s+|new\s+|good\s+|great\s+)?(?:[\w']+\s+){0,2}?(?:movies|films|titles|"
               r"games|picks|recommendations|suggestions|options|ideas|items|ones|things|more|stuff|flicks|pics|"
               r"pictures|stories|docs|noirs|comedies|dramas|thrillers|westerns|musicals|mysteries|documentaries)\b",
               re.IGNORECASE)
K_VERB = re.compile(r"\b(?:give me|show me|recommend|suggest|list|find me|pick|top|just|only|need|get)\s+(?:me\s+)?"
                    r"(?:just\s+|only\s+)?(?P<n>\d{1,2}|one|two|three|four|five|six|seven|eight|nine|ten|a couple of|"
                    r"a dozen)\b"
                    r"(?!\s*(?:years?|decades?|s\b|'s))", re.IGNORECASE)
# Descriptions after a noun ("something dark and funny", "movies with a strong female lead") or before one
# ("a feel-good movie with a great soundtrack", "an uplifting story about friendship").
PREFERENCE = re.compile(r"\b(?:something|anything|a (?:movie|film|game)|movies|films|games|stuff|titles|ones|"
                        r"flicks|stories|dramas|comedies|documentaries|thrillers|westerns|musicals|mysteries|noirs|"
                        r"i'm after|i am after|in the mood for)\s+"
                        r"(?:that(?:'s| is| are| feels?)\s+|which (?:is|are)\s+|with\s+|about\s+)?"
                        r"(?P<pref>[a-z][a-z' -]{2,120})"
                        r"|\b(?:a|an)\s+(?P<pre>(?:[a-z'-]+,?\s+){1,4}?)(?P<noun>movie|film|game|story|plot|flick|tale|"
                        r"one|drama|comedy|thriller|romance|mystery|western|musical|documentary)s?\b"
                        r"(?P<post>\s+(?:with|about|that|where|set in)\s+[a-z' -]{2,100})?", re.IGNORECASE)
TITLE_END = re.compile(r"[,;!?](?:\s|$)|(?<![A-Z])(?<!\b(?:Dr|Mr|Ms|St|Jr|vs))\.(?:\s|$)"
                       r"|\s(?:but|from|with|without|and no|no|not|please|made|released|only|"
                       r"in the|that are|which)\s")
EXCEPT_END = re.compile(r"\b(?:anything but|everything but|except|other than|apart from|rather than)\s*$")
PREFERENCE_END = re.compile(r"[,;.!?]|\b(?:but|from|like|similar|no|not|without|please|released|made|in the)\b")
YEAR_SUFFIX = re.compile(r"\s*\(\d{4}\)\s*$")
STOP = frozenset((
                 "a an the and or but of to for with about from in on at by please some any me i my it is are be "
                 "that this those these one ones more something anything movie movies film films game games stuff "
                 "titles title thanks really very quite kind sort like similar new good great recommend suggest "
                 "watch play want would could should can you show give find get lately recently now tonight today "
                 "again only just also too instead than different else fine ok okay back table mind anymore came "
                 "out between earlier later recent older newer story plot flick flicks tale drama comedy thriller "
                 "romance mystery western musical documentary have has been had seen watched rated played i've "
    "tonight right now your though thanks because let see got handful few either works post pre already "
    "whatever never normally pick level ideas recommendations recommendation options picks pics pictures "
    "need lol something's anything's what's is there are there any stories docs noirs comedies dramas "
    "thrillers westerns musicals mysteries documentaries romances tho bit lot lots much many "
).split())
