"""Reason codes -> short texts a customer or a clerk reads, in the context's language."""

from __future__ import annotations

from functools import lru_cache

from recsvc.core.types import Reason

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "similar_to_viewed": "Similar to {title}, which you are looking at",
        "goes_with_cart": "Goes well with {title} in your basket",
        "similar_to_purchase": "Because you bought {title}",
        "similar_to_interest": "Because you looked at {title}",
        "in_your_taste": "Matches your interest in {category}",
        "bought_before": "You bought this before",
        "picked_for_you": "Picked for you from your activity on every channel",
        "in_category": "Popular in {category}",
        "popular_in_store": "Popular in this store",
        "popular_in_locale": "Popular in your region",
        "popular_in_segment": "Popular with customers like you",
        "popular": "Popular right now",
    },
    "fr": {
        "similar_to_viewed": "Proche de {title}, que vous regardez",
        "goes_with_cart": "Va bien avec {title} dans votre panier",
        "similar_to_purchase": "Parce que vous avez acheté {title}",
        "similar_to_interest": "Parce que vous avez regardé {title}",
        "in_your_taste": "Correspond à votre intérêt pour {category}",
        "bought_before": "Vous l'avez déjà acheté",
        "picked_for_you": "Choisi pour vous d'après votre activité sur tous les canaux",
        "in_category": "Populaire dans {category}",
        "popular_in_store": "Populaire dans ce magasin",
        "popular_in_locale": "Populaire dans votre région",
        "popular_in_segment": "Populaire auprès de clients comme vous",
        "popular": "Populaire en ce moment",
    },
}


def language(locale: str | None) -> str:
    lang = (locale or "en").replace("_", "-").split("-")[0].lower()
    return lang if lang in TEXTS else "en"


@lru_cache(maxsize=8192)
def reason(code: str, lang: str, **fields: str) -> Reason:
    """The reason `code` in `lang` (English when the language lacks it). Cached: a Reason is an
    immutable value, and the same few texts (or the same item titles) come back on every request."""
    template = TEXTS[lang].get(code) or TEXTS["en"][code]
    try:
        text = template.format(**fields)
    except (KeyError, IndexError):
        text = template
    return Reason(code=code, text=text)
