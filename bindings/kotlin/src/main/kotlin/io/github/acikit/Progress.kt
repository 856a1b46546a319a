package io.github.acikit

/**
 * A [ProgressListener] from a lambda: `store.importFile(path, progress = progress { println(it) })`.
 * It is called on one of the library's threads, one event at a time and in order. The call
 * never waits for it: while it is busy, newer events of a phase replace the one waiting, so
 * a slow listener sees fewer events, and always the last one of each phase before the call
 * returns.
 */
fun progress(onProgress: (ProgressEvent) -> Unit): ProgressListener = object : ProgressListener {
    override fun onProgress(event: ProgressEvent) = onProgress(event)
}
