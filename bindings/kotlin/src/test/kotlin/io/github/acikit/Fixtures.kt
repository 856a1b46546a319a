package io.github.acikit

import java.nio.file.Files
import java.nio.file.Path
import java.util.Random
import kotlin.io.path.createDirectories
import kotlin.io.path.writeBytes
import kotlin.io.path.writeText

/** Real images for the tests, built with the binding's own [build]. */
object Fixtures {
    /** A layout (manifest + rootfs with `etc/hello`, and [bigFiles] files of 1 MiB of noise). */
    fun layout(dir: Path, name: String, version: String, bigFiles: Int = 0, extra: String = ""): Path {
        val layout = dir.resolve("layout-${name.replace('/', '_')}-$version")
        layout.resolve("rootfs/etc").createDirectories()
        layout.resolve("manifest").writeText(
            """{"acKind":"ImageManifest","acVersion":"0.8.11","name":"$name",""" +
                """"labels":[{"name":"version","value":"$version"},{"name":"os","value":"linux"},""" +
                """{"name":"arch","value":"amd64"}]$extra}""",
        )
        layout.resolve("rootfs/etc/hello").writeText("hello from $name $version\n")
        val random = Random(42L + version.hashCode())
        for (i in 0 until bigFiles) {
            val bytes = ByteArray(1 shl 20)
            random.nextBytes(bytes)
            layout.resolve("rootfs/big-$i").writeBytes(bytes)
        }
        return layout
    }

    /** The archive of [layout], built uncompressed into `dir`. */
    suspend fun image(dir: Path, name: String, version: String = "1.0.0", bigFiles: Int = 0): Path {
        val out = dir.resolve("${name.replace('/', '_')}-$version.aci")
        build(layout(dir, name, version, bigFiles).toString(), out.toString(), compression = "none")
        return out
    }

    /** Every path under [dir], relative, sorted (the index files left out). */
    fun files(dir: Path): List<String> = Files.walk(dir).use { paths ->
        paths.map { dir.relativize(it).toString() }
            .filter { !it.startsWith("index.db") }
            .sorted()
            .toList()
    }

    /** A test resource as text. */
    fun resource(name: String): String =
        Fixtures::class.java.getResource("/$name")!!.readText()
}
