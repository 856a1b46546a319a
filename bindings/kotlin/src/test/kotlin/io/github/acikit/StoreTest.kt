package io.github.acikit

import java.io.ByteArrayOutputStream
import java.nio.file.Files
import java.nio.file.Path
import java.time.Duration
import java.time.Instant
import kotlin.io.path.exists
import kotlin.io.path.readBytes
import kotlin.io.path.readText
import kotlin.test.assertContentEquals
import kotlin.test.assertEquals
import kotlin.test.assertFalse
import kotlin.test.assertNull
import kotlin.test.assertTrue
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.io.TempDir

class StoreTest {
    @TempDir
    lateinit var dir: Path

    @Test
    fun `import, list, export give back the same image`() = runBlocking {
        val aci = Fixtures.image(dir, "example.com/hello")
        Store.open(dir.resolve("store").toString()).use { store ->
            val imported = store.importFile(aci.toString())
            assertEquals("example.com/hello", imported.name)
            assertFalse(imported.alreadyPresent)
            assertEquals(imageId(aci.toString()), imported.id)

            val images = store.list()
            assertEquals(1, images.size)
            val info = images[0]
            assertEquals(imported.id, info.id)
            assertEquals(mapOf("version" to "1.0.0", "os" to "linux", "arch" to "amd64"), info.labels)
            assertEquals(Files.size(aci), info.size)
            assertEquals(aci.toString(), info.origin)
            assertTrue(Duration.between(info.importedAt, Instant.now()).abs() < Duration.ofMinutes(5))

            val out = dir.resolve("out.aci")
            val exported = store.export("example.com/hello:1.0.0", out.toString())
            assertEquals(imported.id, exported.id)
            assertEquals(imported.id, imageId(out.toString()))
            assertContentEquals(aci.readBytes(), out.readBytes())

            val gz = dir.resolve("out.aci.gz")
            val written = store.export(imported.id, gz.toString(), compression = "gzip")
            assertEquals(Files.size(gz), written.written)
            assertEquals(imported.id, validate(gz.toString()).id)
            assertEquals("gzip", validate(gz.toString()).compression)

            assertTrue(store.importFile(aci.toString()).alreadyPresent)
        }
    }

    @Test
    fun `export, openRead and render take a name with labels`() = runBlocking {
        Store.open(dir.resolve("store").toString()).use { store ->
            val one = store.importFile(Fixtures.image(dir, "example.com/app", "1.0.0").toString())
            val two = store.importFile(Fixtures.image(dir, "example.com/app", "2.0.0").toString())
            val v1 = mapOf("version" to "1.0.0")

            // The name alone means the newest import; labels pick the other one.
            assertEquals(two.id, store.export("example.com/app", dir.resolve("new.aci").toString()).id)
            val out = dir.resolve("old.aci.zst")
            val exported = store.export("example.com/app", out.toString(), v1, compression = "zstd")
            assertEquals(one.id, exported.id)
            assertEquals(one.id, imageId(out.toString()))

            val tar = ByteArrayOutputStream()
            store.openRead("example.com/app", v1).use { reader ->
                while (true) tar.write(reader.read() ?: break)
            }
            assertContentEquals(dir.resolve("example.com_app-1.0.0.aci").readBytes(), tar.toByteArray())

            val target = dir.resolve("run")
            val rendered = store.render("example.com/app", target.toString(), v1, strategy = "copy")
            assertEquals(one.id, rendered.id)
            assertEquals("hello from example.com/app 1.0.0\n", target.resolve("etc/hello").readText())
            store.release(target.toString())

            // Labels no image has: not_found, and no file written.
            val missing = dir.resolve("missing.aci")
            val err = kotlin.test.assertFailsWith<AcikitException.NotFound> {
                store.export("example.com/app", missing.toString(), mapOf("version" to "3.0.0"))
            }
            assertEquals("not_found", err.code)
            assertFalse(missing.exists())
            kotlin.test.assertFailsWith<AcikitException.NotFound> {
                store.render("example.com/app", target.toString(), mapOf("arch" to "arm64"))
            }
            assertFalse(target.exists())
            // Labels go with a name, not an ID: the core's query parser says so.
            val bad = kotlin.test.assertFailsWith<AcikitException> { store.openRead(one.id, v1) }
            assertEquals("invalid_argument", bad.code)
        }
    }

    @Test
    fun `an image streams out chunk by chunk`() = runBlocking {
        val aci = Fixtures.image(dir, "example.com/stream", bigFiles = 3)
        Store.open(dir.resolve("store").toString()).use { store ->
            val id = store.importFile(aci.toString()).id
            val tar = ByteArrayOutputStream()
            var chunks = 0
            store.openRead(id.take(30)).use { reader ->
                while (true) {
                    val chunk = reader.read() ?: break
                    tar.write(chunk)
                    chunks++
                }
                assertNull(reader.read())
            }
            assertTrue(chunks > 1, "$chunks chunks")
            assertContentEquals(aci.readBytes(), tar.toByteArray())
        }
    }

    @Test
    fun `render gives the rootfs and release removes it`() = runBlocking {
        val aci = Fixtures.image(dir, "example.com/render")
        Store.open(dir.resolve("store").toString()).use { store ->
            val id = store.importFile(aci.toString()).id
            val target = dir.resolve("run")
            val rendered = store.render("example.com/render", target.toString(), strategy = "copy")
            assertEquals(id, rendered.id)
            assertEquals("copy", rendered.strategy)
            assertEquals(listOf(id), rendered.layers)
            val hello = Path.of(rendered.target).resolve("etc/hello")
            assertEquals("hello from example.com/render 1.0.0\n", hello.readText())
            // A rendered image is in use: it cannot be removed.
            val err = kotlin.test.assertFailsWith<AcikitException.Conflict> { store.remove(id) }
            assertEquals("in_use", err.code)

            store.release(target.toString())
            assertFalse(target.exists())
            store.remove(id)
            assertEquals(emptyList(), store.list())
        }
    }

    @Test
    fun `find, get, remove, gc, fsck and stats`() = runBlocking {
        Store.open(dir.resolve("store").toString()).use { store ->
            val one = store.importFile(Fixtures.image(dir, "example.com/app", "1.0.0").toString())
            val two = store.importFile(Fixtures.image(dir, "example.com/app", "2.0.0").toString())
            store.importFile(Fixtures.image(dir, "example.com/other").toString())

            assertEquals(setOf(one.id, two.id), store.find("example.com/app").map { it.id }.toSet())
            assertEquals(listOf(one.id), store.find("example.com/app", mapOf("version" to "1.0.0")).map { it.id })
            assertEquals(emptyList(), store.find("example.com/none"))
            assertEquals(one.id, store.get("example.com/app:1.0.0").id)
            assertEquals(two.id, store.get("example.com/app", mapOf("version" to "2.0.0")).id)

            val stats = store.stats()
            assertEquals("sqlite", stats.index)
            assertEquals(3L, stats.images)

            store.remove("example.com/app:1.0.0")
            assertEquals(listOf(two.id), store.find("example.com/app").map { it.id })
            assertEquals(2L, store.stats().images)
            // remove took the image's files with it: gc finds nothing of it left.
            val gc = store.gc()
            assertEquals(0L, gc.recipesRemoved, "$gc")
            val fsck = store.fsck()
            assertTrue(fsck.clean, "$fsck")
            assertEquals(2L, fsck.imagesChecked)
        }
    }

    @Test
    fun `a read-only store reads and refuses writes`() = runBlocking {
        val aci = Fixtures.image(dir, "example.com/ro")
        val storeDir = dir.resolve("store").toString()
        Store.open(storeDir).use { it.importFile(aci.toString()) }
        Store.open(storeDir, StoreOptions(readOnly = true)).use { store ->
            assertEquals(1, store.list().size)
            val err = kotlin.test.assertFailsWith<AcikitException.Privilege> {
                store.importFile(aci.toString())
            }
            assertEquals("read_only_store", err.code)
        }
    }
}
