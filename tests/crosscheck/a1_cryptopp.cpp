// a1_cryptopp: format A1 (the official orthanc-object-storage plugin's client-side encryption) with
// Crypto++, the library that plugin uses: an implementation independent of orthanc_objstore.crypto, for the
// cross-check tests (tests/providers/test_a1_crosscheck.py). Written from the published byte layout:
//
//   off 0     len 2   "A1"
//   off 2     len 4   master key id, uint32 little-endian
//   off 6     len 32  EIV  = IV  xor KS[0:32]
//   off 38    len 32  EDEK = DEK xor KS[0:32]
//   off 70    len N   AES-256-GCM ciphertext of the plaintext (key DEK, 32-byte nonce IV, AAD = bytes 0..69)
//   off 70+N  len 16  GCM tag
//   KS = AES-256-CTR keystream of the master key from an all-zero counter block.
//
// A key file is base64 of the 32-byte master key (whitespace ignored), as `openssl rand -base64 32` writes.
//
//   a1_cryptopp encrypt --master ID:KEYFILE [--iv HEX64 --dek HEX64] < plaintext > object
//   a1_cryptopp decrypt --master ID:KEYFILE [--previous ID:KEYFILE]... < object > plaintext
//
// Exit status: 0 done; 1 the object is refused (the reason on stderr, nothing on stdout); 2 bad usage.
// scripts/setup.sh test builds it into build/a1_cryptopp.

#include <cryptopp/aes.h>
#include <cryptopp/base64.h>
#include <cryptopp/files.h>
#include <cryptopp/filters.h>
#include <cryptopp/gcm.h>
#include <cryptopp/hex.h>
#include <cryptopp/modes.h>
#include <cryptopp/osrng.h>

#include <cstdint>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

const size_t KEY_SIZE = 32;
const size_t IV_SIZE = 32;
const size_t TAG_SIZE = 16;
const size_t PREFIX_SIZE = 2 + 4 + IV_SIZE + KEY_SIZE;  // 70
typedef std::vector<unsigned char> Bytes;

struct Usage : std::runtime_error {
  explicit Usage(const std::string& what) : std::runtime_error(what) {}
};
struct Refused : std::runtime_error {
  explicit Refused(const std::string& what) : std::runtime_error(what) {}
};

Bytes ReadKeyFile(const std::string& path) {
  std::string decoded;
  try {
    CryptoPP::FileSource source(path.c_str(), true, new CryptoPP::Base64Decoder(new CryptoPP::StringSink(decoded)));
  } catch (const CryptoPP::Exception&) {
    throw Usage("cannot read the key file " + path);
  }
  if (decoded.size() < KEY_SIZE) {
    throw Usage("the key file " + path + " decodes to fewer than 32 bytes");
  }
  return Bytes(decoded.begin(), decoded.begin() + KEY_SIZE);
}

// ID:PATH -> (id, key)
std::pair<uint32_t, Bytes> ParseKeySpec(const std::string& spec) {
  size_t colon = spec.find(':');
  if (colon == std::string::npos || colon == 0) {
    throw Usage("a key is given as ID:KEYFILE, got '" + spec + "'");
  }
  unsigned long long id = 0;
  try {
    size_t used = 0;
    id = std::stoull(spec.substr(0, colon), &used, 10);
    if (used != colon || id > 0xFFFFFFFFull) throw std::out_of_range("id");
  } catch (const std::exception&) {
    throw Usage("a key id is an integer from 0 to 4294967295, got '" + spec.substr(0, colon) + "'");
  }
  return std::make_pair(static_cast<uint32_t>(id), ReadKeyFile(spec.substr(colon + 1)));
}

Bytes FromHex(const std::string& hex, size_t size, const char* what) {
  std::string decoded;
  CryptoPP::StringSource(hex, true, new CryptoPP::HexDecoder(new CryptoPP::StringSink(decoded)));
  if (decoded.size() != size || hex.size() != 2 * size) {
    throw Usage(std::string(what) + " must be " + std::to_string(size) + " bytes in hex");
  }
  return Bytes(decoded.begin(), decoded.end());
}

// KS[0:32]: AES-256-CTR under the master key, from an all-zero 16-byte counter block
Bytes KeyStream(const Bytes& master) {
  const unsigned char counter[16] = {0};
  CryptoPP::CTR_Mode<CryptoPP::AES>::Encryption ctr;
  ctr.SetKeyWithIV(master.data(), master.size(), counter, sizeof(counter));
  Bytes zeros(IV_SIZE, 0), stream(IV_SIZE);
  ctr.ProcessData(stream.data(), zeros.data(), zeros.size());
  return stream;
}

Bytes Xor(const unsigned char* a, const Bytes& b) {
  Bytes out(b.size());
  for (size_t i = 0; i < b.size(); i++) out[i] = a[i] ^ b[i];
  return out;
}

Bytes Encrypt(const Bytes& plain, uint32_t keyId, const Bytes& master, Bytes iv, Bytes dek) {
  if (iv.empty()) {
    CryptoPP::AutoSeededRandomPool random;
    iv.resize(IV_SIZE);
    dek.resize(KEY_SIZE);
    random.GenerateBlock(iv.data(), iv.size());
    random.GenerateBlock(dek.data(), dek.size());
  }
  Bytes ks = KeyStream(master);
  Bytes object(PREFIX_SIZE + plain.size() + TAG_SIZE);
  object[0] = 'A';
  object[1] = '1';
  for (int i = 0; i < 4; i++) object[2 + i] = static_cast<unsigned char>((keyId >> (8 * i)) & 0xFF);
  Bytes eiv = Xor(iv.data(), ks), edek = Xor(dek.data(), ks);
  std::copy(eiv.begin(), eiv.end(), object.begin() + 6);
  std::copy(edek.begin(), edek.end(), object.begin() + 6 + IV_SIZE);

  CryptoPP::GCM<CryptoPP::AES>::Encryption gcm;
  gcm.SetKeyWithIV(dek.data(), dek.size(), iv.data(), iv.size());
  unsigned char* body = object.data() + PREFIX_SIZE;
  gcm.EncryptAndAuthenticate(body, body + plain.size(), TAG_SIZE, iv.data(), static_cast<int>(iv.size()),
                             object.data(), PREFIX_SIZE, plain.data(), plain.size());
  return object;
}

Bytes Decrypt(const Bytes& object, const std::map<uint32_t, Bytes>& keys) {
  if (object.size() < 2) throw Refused("no header found");
  if (object[0] != 'A' || object[1] != '1') throw Refused("version is not supported (not A1)");
  if (object.size() < 6) throw Refused("no master key id found");
  uint32_t keyId = 0;
  for (int i = 0; i < 4; i++) keyId |= static_cast<uint32_t>(object[2 + i]) << (8 * i);
  std::map<uint32_t, Bytes>::const_iterator key = keys.find(keyId);
  if (key == keys.end()) throw Refused("master key id " + std::to_string(keyId) + " is not among the keys");
  if (object.size() < PREFIX_SIZE + TAG_SIZE) throw Refused("shorter than 86 bytes");

  Bytes ks = KeyStream(key->second);
  Bytes iv = Xor(object.data() + 6, ks), dek = Xor(object.data() + 6 + IV_SIZE, ks);
  size_t size = object.size() - PREFIX_SIZE - TAG_SIZE;
  Bytes plain(size);
  CryptoPP::GCM<CryptoPP::AES>::Decryption gcm;
  gcm.SetKeyWithIV(dek.data(), dek.size(), iv.data(), iv.size());
  const unsigned char* body = object.data() + PREFIX_SIZE;
  bool good = gcm.DecryptAndVerify(plain.data(), body + size, TAG_SIZE, iv.data(), static_cast<int>(iv.size()),
                                   object.data(), PREFIX_SIZE, body, size);
  if (!good) throw Refused("integrity check failed (tag mismatch)");
  return plain;
}

Bytes ReadAll(std::FILE* file) {
  Bytes data;
  unsigned char chunk[65536];
  size_t got;
  while ((got = std::fread(chunk, 1, sizeof(chunk), file)) > 0) data.insert(data.end(), chunk, chunk + got);
  if (std::ferror(file)) throw Usage("cannot read standard input");
  return data;
}

void WriteAll(const Bytes& data) {
  if (!data.empty() && std::fwrite(data.data(), 1, data.size(), stdout) != data.size()) {
    throw Usage("cannot write standard output");
  }
  std::fflush(stdout);
}

int Run(int argc, char** argv) {
  if (argc < 2) throw Usage("no command");
  std::string command = argv[1];
  if (command != "encrypt" && command != "decrypt") throw Usage("unknown command '" + command + "'");
  bool haveMaster = false;
  uint32_t masterId = 0;
  Bytes masterKey, iv, dek;
  std::map<uint32_t, Bytes> keys;
  for (int i = 2; i < argc; i++) {
    std::string option = argv[i];
    if (i + 1 >= argc) throw Usage("option " + option + " needs a value");
    std::string value = argv[++i];
    if (option == "--master") {
      std::pair<uint32_t, Bytes> key = ParseKeySpec(value);
      masterId = key.first;
      masterKey = key.second;
      haveMaster = true;
    } else if (option == "--previous" && command == "decrypt") {
      std::pair<uint32_t, Bytes> key = ParseKeySpec(value);
      keys[key.first] = key.second;
    } else if (option == "--iv" && command == "encrypt") {
      iv = FromHex(value, IV_SIZE, "--iv");
    } else if (option == "--dek" && command == "encrypt") {
      dek = FromHex(value, KEY_SIZE, "--dek");
    } else {
      throw Usage("unknown option " + option + " for " + command);
    }
  }
  if (!haveMaster) throw Usage("--master ID:KEYFILE is required");
  if (iv.empty() != dek.empty()) throw Usage("--iv and --dek go together");
  Bytes input = ReadAll(stdin);
  if (command == "encrypt") {
    WriteAll(Encrypt(input, masterId, masterKey, iv, dek));
  } else {
    keys[masterId] = masterKey;  // the current key wins over a previous one with the same id
    WriteAll(Decrypt(input, keys));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const Refused& refused) {
    std::cerr << "a1_cryptopp: refused: " << refused.what() << std::endl;
    return 1;
  } catch (const Usage& usage) {
    std::cerr << "a1_cryptopp: " << usage.what() << "\n"
              << "usage: a1_cryptopp encrypt --master ID:KEYFILE [--iv HEX --dek HEX] < plaintext > object\n"
              << "       a1_cryptopp decrypt --master ID:KEYFILE [--previous ID:KEYFILE]... < object > plaintext"
              << std::endl;
    return 2;
  } catch (const CryptoPP::Exception& error) {
    std::cerr << "a1_cryptopp: Crypto++: " << error.what() << std::endl;
    return 1;
  }
}
