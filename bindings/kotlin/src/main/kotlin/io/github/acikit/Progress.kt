package io.github.acikit

/**
 * A [ProgressListener] from a lambda: `store.importFile(path, progress = progress { println(it) })`.
 * It is called on one of the library's threads; keep it short, the call waits for it.
 */
fun progress(onProgress: (ProgressEvent) -> Unit): ProgressListener = object : ProgressListener {
    override fun onProgress(event: ProgressEvent) = onProgress(event)
}
