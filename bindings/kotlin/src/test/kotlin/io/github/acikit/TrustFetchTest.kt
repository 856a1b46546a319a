package io.github.acikit

import java.nio.file.Path
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertNull
import kotlin.test.assertTrue
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.io.TempDir

class TrustFetchTest {
    @TempDir
    lateinit var dir: Path

    private val fingerprint = "776119d1545adfa86e5737c10c40b7823f7f8ec9"

    @Test
    fun `keys are added, listed and removed`() = runBlocking {
        Store.open(dir.resolve("store").toString()).use { store ->
            val key = store.trustAdd(Fixtures.resource("example-public.asc"), "example.com")
            assertEquals(fingerprint, key.fingerprint)
            assertEquals("example.com", key.prefix)
            assertEquals(listOf(fingerprint), store.trustList().map { it.fingerprint })
            assertEquals(fingerprint, store.trustRemove(fingerprint).single().fingerprint)
            assertEquals(emptyList(), store.trustList())
            val err = assertFailsWith<AcikitException.Trust> { store.trustAdd("not a key", null) }
            assertEquals("bad_openpgp", err.code)
        }
    }

    @Test
    fun `an image served, discovered and fetched with its signature`() = runBlocking {
        val aci = Fixtures.image(dir, "example.com/hello")
        Store.open(dir.resolve("repository").toString()).use { repository ->
            repository.trustAdd(Fixtures.resource("example-public.asc"), "example.com")
            val server = serve(repository, options = ServeOptions(pushToken = "token"))
            try {
                // The repository serves what it stores; its signature is pushed beside it.
                val signed = sign(aci.toString(), Fixtures.resource("example-secret.asc"))
                assertEquals(fingerprint, signed.fingerprint)
                val pushed = push(server.url(), aci.toString(), "token", signed.armored, NetOptions(insecureHttp = true))
                assertTrue(pushed.signed, "$pushed")
                assertEquals(fingerprint, pushed.verifiedBy)

                val port = server.address().substringAfterLast(':').toInt()
                val net = NetOptions(insecureHttp = true, port = port.toUShort(), resolve = mapOf("example.com" to server.address()))
                val walked = java.util.Collections.synchronizedList(mutableListOf<ProgressEvent>())
                val found = discover("example.com/hello:1.0.0", net = net, progress = progress { walked.add(it) })
                assertTrue(found.aciUrls.single().endsWith("/example.com/hello/1.0.0.aci"), "$found")
                // Two levels (example.com/hello, example.com): the last event says both are done.
                assertEquals(setOf("discover"), walked.map { it.phase }.toSet())
                assertEquals(ProgressEvent("discover", 2L, 2L), walked.last())

                Store.open(dir.resolve("store").toString()).use { store ->
                    // Not trusted yet: refused.
                    val err = assertFailsWith<AcikitException.Trust> {
                        store.fetch("example.com/hello:1.0.0", options = FetchOptions(net = net))
                    }
                    assertEquals("untrusted_key", err.code)
                    store.trustAdd(Fixtures.resource("example-public.asc"), "example.com")
                    val fetched = store.fetch("example.com/hello", mapOf("version" to "1.0.0"), FetchOptions(net = net))
                    assertEquals(imageId(aci.toString()), fetched.id)
                    assertEquals(fingerprint, fetched.signedBy)
                    assertEquals("downloaded", fetched.outcome)
                    assertEquals(listOf(fetched.id), store.list().map { it.id })
                }
            } finally {
                server.stop()
            }
        }
    }

    @Test
    fun `a stopped server stops once`() = runBlocking {
        Store.open(dir.resolve("repository").toString()).use { repository ->
            val server = serve(repository)
            server.stop()
            server.stop()
            assertNull(runCatching { java.net.Socket("127.0.0.1", server.address().substringAfterLast(':').toInt()) }.getOrNull())
        }
    }
}
