package io.github.acikit

import com.sun.net.httpserver.HttpsConfigurator
import com.sun.net.httpserver.HttpsServer
import java.net.InetSocketAddress
import java.nio.file.Path
import java.security.KeyStore
import java.util.Base64
import java.util.Collections
import javax.net.ssl.KeyManagerFactory
import javax.net.ssl.SSLContext
import kotlin.io.path.createDirectories
import kotlin.io.path.inputStream
import kotlin.io.path.writeText
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertTrue
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.io.TempDir

/** Credentials (`NetOptions.authConfig`, else the store's `config/auth.json`) reach the server. */
class AuthTest {
    @TempDir
    lateinit var dir: Path

    /**
     * An HTTPS server (a self-signed certificate made by the JDK's keytool) that records the
     * `Authorization` header of every request and answers 404. (HTTPS because discovery
     * tries it first: the JDK's plain HTTP server would wait forever on a TLS hello.)
     */
    private fun recorder(seen: MutableList<String>): HttpsServer {
        val keys = dir.resolve("server.p12")
        val password = "changeit".toCharArray()
        val keytool = Path.of(System.getProperty("java.home"), "bin", "keytool").toString()
        val made = ProcessBuilder(
            keytool, "-genkeypair", "-alias", "server", "-keyalg", "EC", "-groupname", "secp256r1",
            "-dname", "CN=registry.example", "-validity", "2", "-storetype", "PKCS12",
            "-keystore", keys.toString(), "-storepass", String(password),
        ).redirectErrorStream(true).start()
        val output = made.inputStream.readBytes().decodeToString()
        check(made.waitFor() == 0) { "keytool: $output" }
        val store = KeyStore.getInstance("PKCS12")
        keys.inputStream().use { store.load(it, password) }
        val managers = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm())
        managers.init(store, password)
        val tls = SSLContext.getInstance("TLS")
        tls.init(managers.keyManagers, null, null)

        val server = HttpsServer.create(InetSocketAddress("127.0.0.1", 0), 0)
        server.httpsConfigurator = HttpsConfigurator(tls)
        server.createContext("/") { exchange ->
            seen.add(exchange.requestHeaders.getFirst("Authorization") ?: "none")
            exchange.sendResponseHeaders(404, -1)
            exchange.close()
        }
        server.start()
        return server
    }

    @Test
    fun `discover and fetch send the credentials of the auth config`() = runBlocking {
        val seen = Collections.synchronizedList(mutableListOf<String>())
        val server = recorder(seen)
        try {
            val port = server.address.port
            val net = NetOptions(
                insecureTls = true,
                port = port.toUShort(),
                resolve = mapOf("registry.example" to "127.0.0.1:$port"),
            )
            // Without credentials, none are sent.
            assertFailsWith<AcikitException> { discover("registry.example/app", net = net) }
            assertTrue(seen.isNotEmpty() && seen.all { it == "none" }, "$seen")

            val bearer = dir.resolve("auth.json")
            bearer.writeText("""{"registry.example": {"type": "bearer", "token": "s3cret"}}""")
            seen.clear()
            assertFailsWith<AcikitException> {
                discover("registry.example/app", net = net.copy(authConfig = bearer.toString()))
            }
            assertTrue(seen.isNotEmpty() && seen.all { it == "Bearer s3cret" }, "$seen")

            val storeDir = dir.resolve("store")
            Store.open(storeDir.toString()).use { store ->
                // A store's fetch reads the store's own config/auth.json when no file is named.
                storeDir.resolve("config").createDirectories()
                storeDir.resolve("config/auth.json").writeText(
                    """{"registry.example": {"type": "basic", "user": "alice", "password": "pw"}}""",
                )
                seen.clear()
                assertFailsWith<AcikitException> { store.fetch("registry.example/app", options = FetchOptions(net = net)) }
                val basic = "Basic " + Base64.getEncoder().encodeToString("alice:pw".toByteArray())
                assertTrue(seen.isNotEmpty() && seen.all { it == basic }, "$seen")

                // A file named in the options wins over the store's.
                seen.clear()
                assertFailsWith<AcikitException> {
                    store.fetch("registry.example/app", options = FetchOptions(net = net.copy(authConfig = bearer.toString())))
                }
                assertTrue(seen.isNotEmpty() && seen.all { it == "Bearer s3cret" }, "$seen")

                // A named file that is missing, or a store file that is not JSON, is an error
                // before anything is sent.
                seen.clear()
                val missing = assertFailsWith<AcikitException.NotFound> {
                    store.fetch("registry.example/app", options = FetchOptions(net = net.copy(authConfig = dir.resolve("none.json").toString())))
                }
                assertEquals("not_found", missing.code)
                storeDir.resolve("config/auth.json").writeText("not json")
                val bad = assertFailsWith<AcikitException> { store.fetch("registry.example/app", options = FetchOptions(net = net)) }
                assertEquals("invalid_argument", bad.code)
                assertEquals(emptyList(), seen)
            }
        } finally {
            server.stop(0)
        }
    }
}
