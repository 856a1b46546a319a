package io.github.acikit

import java.nio.file.Files
import java.nio.file.Path
import java.util.Collections
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertTrue
import kotlinx.coroutines.CompletableDeferred
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.delay
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.io.TempDir

class ProgressCancelTest {
    @TempDir
    lateinit var dir: Path

    @Test
    fun `progress events come in order and end at the archive size`() = runBlocking {
        val aci = Fixtures.image(dir, "example.com/big", bigFiles = 6)
        val events = Collections.synchronizedList(mutableListOf<ProgressEvent>())
        Store.open(dir.resolve("store").toString()).use { store ->
            store.importFile(aci.toString(), progress = progress { events.add(it) })
        }
        val imports = events.filter { it.phase == "import" }
        assertTrue(imports.size >= 3, "$events")
        assertEquals(imports.map { it.done }.sorted(), imports.map { it.done })
        assertEquals(Files.size(aci), imports.last().done)
        assertTrue(events.any { it.phase == "commit" }, "$events")
    }

    @Test
    fun `a slow listener does not hold the call, and still gets the last events`() = runBlocking {
        val aci = Fixtures.image(dir, "example.com/big", bigFiles = 32)
        // A listener that returns at once sees many of the events the core sends (not all:
        // the core does not wait for it either); the core sends the same ones every time.
        val sent = Collections.synchronizedList(mutableListOf<ProgressEvent>())
        Store.open(dir.resolve("fast").toString()).use { store ->
            store.importFile(aci.toString(), progress = progress { sent.add(it) })
        }
        // One that sleeps in every call would make the import wait 500 ms an event if the
        // core waited for it (and see every event); it does not: it sees far fewer.
        val seen = Collections.synchronizedList(mutableListOf<ProgressEvent>())
        Store.open(dir.resolve("slow").toString()).use { store ->
            store.importFile(aci.toString(), progress = progress { Thread.sleep(500); seen.add(it) })
            // Every event was delivered before the call returned: none comes later.
            val delivered = seen.size
            Thread.sleep(600)
            assertEquals(delivered, seen.size)
        }
        assertTrue(sent.size >= 10, "$sent")
        assertTrue(seen.size < sent.size / 2, "${seen.size} of ${sent.size} events: $seen")
        // In order, and the last one of each phase is always delivered.
        val imports = seen.filter { it.phase == "import" }.map { it.done }
        assertEquals(imports.sorted(), imports)
        assertEquals(Files.size(aci), imports.last())
        assertEquals(sent.last(), seen.last())
        assertEquals(sent.map { it.phase }.distinct(), seen.map { it.phase }.distinct())
    }

    @Test
    fun `a cancelled import leaves nothing behind`() = runBlocking {
        val aci = Fixtures.image(dir, "example.com/big", bigFiles = 32)
        val storeDir = dir.resolve("store")
        Store.open(storeDir.toString()).use { store ->
            val before = Fixtures.files(storeDir)
            val cancel = CancelHandle()
            val seen = mutableListOf<ProgressEvent>()
            val err = assertFailsWith<AcikitException.Cancelled> {
                store.importFile(aci.toString(), progress = progress { seen.add(it); cancel.cancel() }, cancel = cancel)
            }
            assertEquals("cancelled", err.code)
            assertTrue(seen.first().done < Files.size(aci), "mid-way: $seen")
            assertTrue(cancel.isCancelled())
            assertEquals(emptyList(), store.list())
            assertEquals(before, Fixtures.files(storeDir))
            assertTrue(store.fsck().clean)

            // A cancelled handle cancels a call before it starts.
            assertFailsWith<AcikitException.Cancelled> { store.importFile(aci.toString(), cancel = cancel) }
            // And a call without it goes through.
            assertEquals("example.com/big", store.importFile(aci.toString()).name)
        }
    }

    @Test
    fun `cancelling the coroutine cancels the call`() = runBlocking {
        // Large enough that the import is still running when the first event comes.
        val aci = Fixtures.image(dir, "example.com/big", bigFiles = 32)
        val storeDir = dir.resolve("store")
        Store.open(storeDir.toString()).use { store ->
            val before = Fixtures.files(storeDir)
            val started = CompletableDeferred<Unit>()
            val job = launch(Dispatchers.Default) {
                store.importFile(
                    aci.toString(),
                    progress = progress { started.complete(Unit) },
                )
            }
            started.await()
            job.cancel()
            job.join()
            assertTrue(job.isCancelled)
            // The core's task sees the cancellation at its next check and cleans up.
            withTimeout(10_000) {
                // (A walk racing with the clean-up may meet a file being removed: try again.)
                while (runCatching { Fixtures.files(storeDir) }.getOrNull() != before) delay(20)
            }
            assertEquals(emptyList(), store.list())
            assertTrue(store.fsck().clean)
        }
    }

    @Test
    fun `a cancelled export leaves no file`() = runBlocking {
        val aci = Fixtures.image(dir, "example.com/big", bigFiles = 24)
        Store.open(dir.resolve("store").toString()).use { store ->
            val id = store.importFile(aci.toString()).id
            val out = dir.resolve("out.aci")
            val cancel = CancelHandle()
            assertFailsWith<AcikitException.Cancelled> {
                store.export(id, out.toString(), progress = progress { cancel.cancel() }, cancel = cancel)
            }
            assertTrue(Files.notExists(out))
            val leftovers = Files.list(dir).use { s -> s.map { it.fileName.toString() }.filter { "out.aci" in it }.toList() }
            assertEquals(emptyList(), leftovers)
        }
    }
}
