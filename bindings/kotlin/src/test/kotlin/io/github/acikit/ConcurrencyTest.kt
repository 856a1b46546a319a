package io.github.acikit

import java.nio.file.Path
import java.util.concurrent.Executors
import kotlin.test.assertEquals
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.asCoroutineDispatcher
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withContext
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.io.TempDir

class ConcurrencyTest {
    @TempDir
    lateinit var dir: Path

    @Test
    fun `one store serves coroutines on several threads at once`() = runBlocking {
        val versions = (1..6).map { "1.0.$it" }
        val images = versions.map { Fixtures.image(dir, "example.com/many", it) }
        Executors.newFixedThreadPool(6).asCoroutineDispatcher().use { pool ->
            Store.open(dir.resolve("store").toString()).use { store ->
                // Imports, each on a thread of its own pool, at the same time.
                val ids = images.map { aci ->
                    async(pool) { store.importFile(aci.toString()).id }
                }.awaitAll()
                assertEquals(6, ids.toSet().size)
                assertEquals(ids.toSet(), store.list().map { it.id }.toSet())

                // Exports, gets and listings at once, on the default dispatcher too.
                val checked = ids.mapIndexed { i, id ->
                    async(if (i % 2 == 0) pool else Dispatchers.Default) {
                        val out = dir.resolve("out-$i.aci")
                        store.export(id, out.toString())
                        assertEquals(id, imageId(out.toString()))
                        assertEquals(id, store.get("example.com/many:${versions[i]}").id)
                        store.list().size
                    }
                }.awaitAll()
                assertEquals(List(6) { 6 }, checked)
            }
        }
    }

    @Test
    fun `blocking callers on plain threads work too`() {
        val aci = runBlocking { Fixtures.image(dir, "example.com/threads") }
        val store = runBlocking { Store.open(dir.resolve("store").toString()) }
        store.use {
            val results = java.util.Collections.synchronizedList(mutableListOf<String>())
            val threads = (1..4).map {
                Thread { results.add(runBlocking { withContext(Dispatchers.IO) { store.importFile(aci.toString()).id } }) }
            }
            threads.forEach { it.start() }
            threads.forEach { it.join() }
            assertEquals(4, results.size)
            assertEquals(1, results.toSet().size)
        }
    }
}
