"""The demo's knowledge base and scripted session (written for the demo).

A help-desk RAG app for a made-up product, so a small local model can only
answer from the retrieved context. The session asks as real users do:
repeats word for word and paraphrases of earlier questions.
"""

from __future__ import annotations

__all__ = ["CORPUS", "SESSION", "SYSTEM_TEMPLATE"]

CORPUS: tuple[str, ...] = (
    "Nimbus Drive is a cloud storage service made by Larkspur Labs. It keeps files in sync "
    "across laptops, phones and tablets, and it was first released in March 2019.",
    "Every new Nimbus Drive account starts with a free trial that lasts 30 days. During the "
    "trial all features of the Pro plan are available and no credit card is needed.",
    "The Basic plan costs 4 dollars per month and includes 200 GB of storage. The Pro plan "
    "costs 11 dollars per month and includes 2 TB of storage and version history.",
    "The largest single file you can upload to Nimbus Drive is 50 GB. Files larger than "
    "that must be split before uploading, for example with a zip archive in parts.",
    "Nimbus Drive accepts payment by credit card, PayPal and bank transfer. Invoices are "
    "sent by email on the first day of every billing month.",
    "To reset your password, open the sign-in page, choose 'Forgot password' and follow "
    "the link that arrives by email. The link expires after 2 hours.",
    "Version history keeps every earlier version of a file for 90 days on the Pro plan. "
    "Deleted files stay in the trash for 30 days before they are removed for good.",
    "Shared folders can be shared with up to 50 people. Each person can be given view-only "
    "or edit access, and the owner can revoke access at any time.",
    "Nimbus Drive encrypts files with AES-256 at rest and TLS 1.3 in transit. Two-factor "
    "authentication can be turned on in the security settings.",
    "Support is available by chat from 8:00 to 20:00 Central European Time on weekdays. "
    "Pro customers can also call the support line on weekends.",
)

SYSTEM_TEMPLATE = (
    "You are a very helpful and friendly support assistant for Nimbus Drive.   Please make "
    "sure to always answer the question using only the context below.\n\n\n"
    "Please always keep your answer short, clear and to the point. If the context does not "
    "contain the answer, please say that you do not know.\n\n"
    "Context:\n{context}"
)

# (question, how it relates to earlier ones) -- the demo shows the second column
SESSION: tuple[tuple[str, str], ...] = (
    ("How long is the free trial of Nimbus Drive?", "new"),
    ("What is the largest file I can upload?", "new"),
    ("How long is the free trial of Nimbus Drive?", "exact repeat of 1"),
    ("How many days does the Nimbus Drive free trial last?", "paraphrase of 1"),
    ("Which payment methods does Nimbus Drive accept?", "new"),
    ("What is the maximum size of a single file I can upload?", "paraphrase of 2"),
    ("How do I reset my password?", "new"),
    ("Which payment methods does Nimbus Drive accept?", "exact repeat of 5"),
)
