package io.github.acikit

// The fields every AcikitException variant carries, readable on the base class too:
// `catch (e: AcikitException) { e.code }`. (uniffi puts them on each variant only.)

/** The stable code of the error (`ErrorKind::as_str()`), e.g. `not_found`, `ambiguous_image`. */
val AcikitException.code: String
    get() = fields().code

/** The category of the error (`ErrorCategory::as_str()`): its exception class. */
val AcikitException.category: String
    get() = fields().category

/** Whether trying again later may succeed (network, not ready, a busy database). */
val AcikitException.retryable: Boolean
    get() = fields().retryable

/** The core's human-readable message (`message` adds the code and the other fields). */
val AcikitException.detail: String
    get() = fields().detail

/** The archive entry the error concerns, if any. */
val AcikitException.entry: String?
    get() = fields().entry

/** For `invalid_manifest`: every problem, with its JSON path. */
val AcikitException.problems: List<ManifestProblem>
    get() = fields().problems

private class Fields(
    val code: String,
    val category: String,
    val retryable: Boolean,
    val detail: String,
    val entry: String?,
    val problems: List<ManifestProblem>,
)

private fun AcikitException.fields(): Fields = when (this) {
    is AcikitException.Input -> Fields(code, category, retryable, detail, entry, problems)
    is AcikitException.InvalidImage -> Fields(code, category, retryable, detail, entry, problems)
    is AcikitException.NotFound -> Fields(code, category, retryable, detail, entry, problems)
    is AcikitException.Conflict -> Fields(code, category, retryable, detail, entry, problems)
    is AcikitException.Integrity -> Fields(code, category, retryable, detail, entry, problems)
    is AcikitException.Trust -> Fields(code, category, retryable, detail, entry, problems)
    is AcikitException.Network -> Fields(code, category, retryable, detail, entry, problems)
    is AcikitException.Io -> Fields(code, category, retryable, detail, entry, problems)
    is AcikitException.Privilege -> Fields(code, category, retryable, detail, entry, problems)
    is AcikitException.Unsupported -> Fields(code, category, retryable, detail, entry, problems)
    is AcikitException.Cancelled -> Fields(code, category, retryable, detail, entry, problems)
    is AcikitException.Internal -> Fields(code, category, retryable, detail, entry, problems)
}
