"""The queue open to everyone (DOMAIN.md sections 3 and 7), without sign-in:
the anonymised queue of each kindergarten, birth year and language (masked
name, category, queue date, the number in this language and the position
the parents' cabinet shows), with the same explanation of the order as the
cabinet; and the published figures of the country and of each district,
with charts drawn on the server. Read from the queue's public routes."""
from __future__ import annotations

import re
from datetime import datetime

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from kezek import charts
from kezek.trust import PUBLIC
from services.gateway.clients import UpstreamError
from services.gateway.portal.pages import Gw, Lang, Render

router = APIRouter(include_in_schema=False, dependencies=[PUBLIC])
PAGE = 100
CHART = {"width": 600, "label_width": 240}     # room for a district's or a figure's name in every language
MONTH = re.compile(r"^(19[7-9]|2[01]\d)\d-(0[1-9]|1[0-2])$")     # 1970-01 to 2199-12


async def district_names(gw: Gw, lang: str) -> dict[str, str]:
    """Territory code -> the district's name in the reader's language (the
    address registry's, through registration); the code when unknown."""
    try:
        tree = await gw.address_tree()
    except UpstreamError:
        return {}
    key = lang if lang in ("ky", "ru", "en") else "ru"
    return {d["code"]: (d.get("names") or {}).get(key) or (d.get("names") or {}).get("ru") or d["code"]
            for r in tree for d in r.get("districts", [])}


@router.get("/queue", response_class=HTMLResponse)
async def kindergartens(render: Render, gw: Gw, lang: Lang):
    kgs = await gw.kindergartens()
    names = await district_names(gw, lang)
    by_district: dict[str, list[dict]] = {}
    for k in sorted(kgs, key=lambda k: (k.get("name") or k["id"])):
        by_district.setdefault(k.get("district") or "", []).append(k)
    return render("open_queue_index.html", districts=[
        {"code": d, "name": names.get(d, d), "kindergartens": by_district[d]} for d in sorted(by_district)])


@router.get("/queue/{kindergarten}", response_class=HTMLResponse)
async def kindergarten_queue(render: Render, gw: Gw, lang: Lang, kindergarten: str, cohort: str = "",
                             language: str = "", page: str = "1"):
    kg = next((k for k in await gw.kindergartens() if k["id"] == kindergarten), None)
    if kg is None:
        raise UpstreamError(404, [{"field": "kindergarten", "code": "kindergarten_unknown",
                                   "params": {"kindergarten": kindergarten[:100]}}])
    this_year = datetime.now(gw.tz).year
    cohorts = list(range(this_year - 1, this_year - 8, -1))
    languages = kg.get("languages") or ["ky", "ru"]
    chosen_cohort = int(cohort) if cohort.isdigit() and int(cohort) in cohorts else None
    chosen_language = language if language in languages else None
    number = int(page) if page.isdigit() and 0 < int(page) <= 100_000 else 1
    queue = None
    if chosen_cohort is not None and chosen_language is not None:
        queue = await gw.queue.public_queue(kindergarten, chosen_cohort, chosen_language,
                                            offset=(number - 1) * PAGE, limit=PAGE)
    names = await district_names(gw, lang)
    # Read by many visitors, changed by the queue now and then: rendered once
    # per answer of the queue (and list of kindergartens, day, reader's language).
    return render.kept(gw.pages, (kindergarten, chosen_cohort, chosen_language, number), "open_queue.html",
                       kindergarten=kg, district_name=names.get(kg.get("district"), kg.get("district")),
                       cohorts=cohorts, teaches=languages, cohort=chosen_cohort, language=chosen_language,
                       queue=queue, page=number, pages=max(1, -(-(queue or {}).get("total", 0) // PAGE)))


@router.get("/figures", response_class=HTMLResponse)
async def figures(render: Render, gw: Gw, lang: Lang, month: str = ""):
    found = await gw.queue.figures(month if MONTH.match(month) else None)
    names = await district_names(gw, lang)
    now = datetime.now(gw.tz)
    months = []
    y, m = now.year, now.month
    for _ in range(12):
        months.append(f"{y:04d}-{m:02d}")
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
    total = found["total"]
    _ = gw.gettext(lang)
    language = {"ky": _("Kyrgyz"), "ru": _("Russian"), "kk": _("Kazakh"), "uz": _("Uzbek"), "tg": _("Tajik"),
                "en": _("English")}
    return render("figures.html", month=found["month"], months=months, total=total,
                  districts=[{**d, "name": names.get(d["district"], d["district"])} for d in found["districts"]],
                  charts={
                      "waiting": charts.bars([(f"{w['cohort']} · {language.get(w['language'], w['language'])}", w["children"], "waiting")
                                              for w in total["waiting"]], **CHART),
                      "districts": charts.bars([(names.get(d["district"], d["district"]), d["waiting_total"],
                                                 "waiting") for d in found["districts"]], **CHART),
                      "referrals": charts.bars([(k, total["referrals"][k], k) for k in
                                                ("issued", "enrolled", "expired", "cancelled", "rejected", "left")],
                                               **CHART),
                  })
