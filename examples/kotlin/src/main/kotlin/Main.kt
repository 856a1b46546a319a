// A small program on the acikit jar: imports an image archive into a store, lists the
// store, exports the image back and checks its ID.
//
//     java -cp "target/classes:$(cat target/classpath.txt)" MainKt IMAGE.aci STORE OUT.aci [--time]
//
// With --time it only imports (OUT is not written) and prints how long the import call
// took, measured inside the program (bench/kotlin.sh compares it with `acikit import`).

import io.github.acikit.AcikitException
import io.github.acikit.Store
import io.github.acikit.code
import io.github.acikit.detail
import io.github.acikit.imageId
import io.github.acikit.progress
import kotlin.system.exitProcess
import kotlinx.coroutines.runBlocking

fun main(args: Array<String>) = runBlocking {
    val time = "--time" in args
    val paths = args.filter { it != "--time" }
    if (paths.size != 3) {
        System.err.println("usage: MainKt IMAGE.aci STORE OUT.aci [--time]")
        exitProcess(2)
    }
    val (image, storeDir, out) = paths
    try {
        Store.open(storeDir).use { store ->
            var last = -1L
            val started = System.nanoTime()
            val imported = store.importFile(
                image,
                progress = progress { if (!time && it.phase == "import" && it.done - last >= 64L shl 20) { last = it.done; println("  imported ${it.done shr 20} MiB") } },
            )
            val seconds = (System.nanoTime() - started) / 1e9
            if (time) println("import_seconds ${"%.3f".format(seconds)}")
            println("imported ${imported.name} ${imported.id.take(19)}... (${imported.entries} entries)")

            for (info in store.list()) {
                val labels = info.labels.entries.sortedBy { it.key }.joinToString(",") { "${it.key}=${it.value}" }
                println("  ${info.id.take(19)}  ${info.name}  $labels  ${info.size} bytes")
            }

            if (time) return@use
            val exported = store.export(imported.id, out)
            val id = imageId(out)
            check(id == imported.id) { "exported $id, imported ${imported.id}" }
            println("exported ${exported.written} bytes to $out, same image ID")
        }
    } catch (e: AcikitException) {
        System.err.println("error: ${e.code}: ${e.detail}")
        exitProcess(1)
    }
}
