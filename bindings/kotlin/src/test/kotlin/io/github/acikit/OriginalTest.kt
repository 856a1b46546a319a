package io.github.acikit

import java.nio.file.Files
import java.nio.file.Path
import java.security.MessageDigest
import java.util.concurrent.TimeUnit
import kotlin.io.path.readBytes
import kotlin.io.path.writeText
import kotlin.test.assertContentEquals
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertFalse
import kotlin.test.assertNotNull
import kotlin.test.assertNull
import kotlin.test.assertTrue
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.io.TempDir

/**
 * Original-byte recording (`importFile(original = true)`), `original`, `compactOriginals`
 * and `gc` compacting, on an archive written by GNU gzip (which our exports never write).
 */
class OriginalTest {
    @TempDir
    lateinit var dir: Path

    /** A plain tar of a compressible image, and its `gzip -9` archive. */
    private suspend fun gnuGzipImage(): Pair<Path, Path> {
        val layout = Fixtures.layout(dir, "example.com/original", "1.0.0")
        layout.resolve("rootfs/etc/lines").writeText(
            (0 until 40000).joinToString("") { "line $it: ${it * 7919 % 104729} of the original archive\n" },
        )
        val tar = dir.resolve("original.tar")
        build(layout.toString(), tar.toString(), compression = "none")
        val aci = dir.resolve("original.aci")
        val gzip = ProcessBuilder("gzip", "-9", "-c", tar.toString())
            .redirectOutput(aci.toFile())
            .start()
        assertTrue(gzip.waitFor(60, TimeUnit.SECONDS) && gzip.exitValue() == 0, "gzip failed")
        assertEquals("gzip", validate(aci.toString()).compression)
        return tar to aci
    }

    private suspend fun exportedOriginal(store: Store, id: String, name: String): ByteArray {
        val out = dir.resolve(name)
        store.export(id, out.toString(), compression = "original")
        return out.readBytes()
    }

    private fun sha256(bytes: ByteArray): String =
        MessageDigest.getInstance("SHA-256").digest(bytes).joinToString("") { "%02x".format(it) }

    @Test
    fun `a GNU gzip original is kept pending, then compacted, and exported byte for byte`() = runBlocking<Unit> {
        val (_, aci) = gnuGzipImage()
        val bytes = aci.readBytes()
        Store.open(dir.resolve("store").toString()).use { store ->
            val id = store.importFile(aci.toString(), original = true).id

            val kept = assertNotNull(store.original(id))
            assertEquals("kept", kept.form)
            assertTrue(kept.pending)
            assertEquals("gzip", kept.compression)
            assertEquals(bytes.size.toLong(), kept.size)
            assertEquals(bytes.size.toLong(), kept.keptBytes)
            assertEquals(sha256(bytes), kept.sha256)
            assertContentEquals(bytes, exportedOriginal(store, id, "before.aci"))
            val before = store.stats()
            assertEquals(1L, before.originalRecords)
            assertEquals(bytes.size.toLong(), before.originalCompressedBytes)
            assertEquals(bytes.size.toLong(), before.originalKeptBytes)
            assertEquals(listOf(ImageOriginal(id, kept)), before.originalImages)

            val events = mutableListOf<ProgressEvent>()
            val done = store.compactOriginals(progress = progress { synchronized(events) { events.add(it) } })
            assertEquals(1L, done.compacted)
            assertEquals(0L, done.kept)
            assertTrue(done.bytesFreed > 0)
            synchronized(events) {
                assertTrue(events.isNotEmpty() && events.all { it.phase == "original" }, "$events")
                assertEquals(bytes.size.toLong(), events.last().total)
            }

            val compact = assertNotNull(store.original(id))
            assertEquals("gzip", compact.form)
            assertFalse(compact.pending)
            assertEquals(bytes.size.toLong(), compact.size)
            assertEquals(kept.sha256, compact.sha256)
            assertTrue(compact.keptBytes > 0 && compact.keptBytes < bytes.size / 10, "${compact.keptBytes}")
            assertContentEquals(bytes, exportedOriginal(store, id, "after.aci"))
            val after = store.stats()
            assertEquals(1L, after.originalRecords)
            assertEquals(bytes.size.toLong(), after.originalCompressedBytes)
            assertEquals(compact.keptBytes, after.originalKeptBytes)
            assertEquals(listOf(ImageOriginal(id, compact)), after.originalImages)
            assertEquals(OriginalCompaction(0, 0, 0), store.compactOriginals())
        }
    }

    @Test
    fun `no original without the option, and a tar original is form none`() = runBlocking<Unit> {
        val (tar, aci) = gnuGzipImage()
        Store.open(dir.resolve("store").toString()).use { store ->
            val id = store.importFile(aci.toString()).id
            assertNull(store.original(id))
            assertFailsWith<AcikitException.NotFound> {
                store.export(id, dir.resolve("x.aci").toString(), compression = "original")
            }
            store.remove(id)

            store.importFile(tar.toString(), original = true)
            val info = assertNotNull(store.original(id))
            assertEquals("none", info.form)
            assertFalse(info.pending)
            assertEquals(0L, info.keptBytes)
            assertNull(info.reason)
            assertFailsWith<AcikitException.NotFound> { store.original("sha512-" + "0".repeat(32)) }
        }
    }

    @Test
    fun `gc compacts a pending original`() = runBlocking<Unit> {
        val (_, aci) = gnuGzipImage()
        Store.open(dir.resolve("store").toString()).use { store ->
            val id = store.importFile(aci.toString(), original = true).id
            val report = store.gc()
            assertEquals(1L, report.originalsCompacted)
            assertEquals(0L, report.originalsKept)
            assertTrue(report.originalBytesFreed > 0)
            val info = assertNotNull(store.original(id))
            assertEquals("gzip", info.form)
            assertFalse(info.pending)
            assertEquals(0L, store.gc().originalsCompacted)
        }
    }

    @Test
    fun `a cancelled compaction leaves the original pending`() = runBlocking<Unit> {
        val (_, aci) = gnuGzipImage()
        val bytes = aci.readBytes()
        Store.open(dir.resolve("store").toString()).use { store ->
            val id = store.importFile(aci.toString(), original = true).id
            // Cancelled before the call: the core sees it before compacting anything. (Events
            // reach the listener on another thread, so a cancel from the listener may come
            // after a 200 KB compaction is done.)
            val cancel = CancelHandle()
            cancel.cancel()
            val err = assertFailsWith<AcikitException.Cancelled> { store.compactOriginals(cancel = cancel) }
            assertEquals("cancelled", err.code)
            val info = assertNotNull(store.original(id))
            assertEquals("kept", info.form)
            assertTrue(info.pending)
            assertContentEquals(bytes, exportedOriginal(store, id, "x.aci"))
            assertEquals(1L, store.compactOriginals().compacted)
        }
    }
}
