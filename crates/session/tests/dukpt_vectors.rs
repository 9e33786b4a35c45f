//! DUKPT against the standards' published test data (collected with sources in
//! `../shared/vectors/key-management.md`, sections 1 and 2): ANSI X9.24-1:2009 A.4
//! (TDES: keys, PIN blocks, MACs, request data) and the ANSI X9.24-3:2017 supplement
//! (AES: initial, derivation, working and update keys, format 4 PIN blocks). Rows the
//! file marks "computed" are tested as cross-checks and named so.
//!
//! Not covered: the TDES-CMAC columns of 1.2 (openemv's own, not in X9.24-1, and the
//! crate has no TDES-CMAC MAC algorithm); HMAC and response keys (2.5: none published).

mod keys_common;
use keys_common::{hex, to_hex};

use cipher::{BlockEncrypt, KeyInit};
use des::TdesEde2;
use isoswitch_session::crypto::dukpt::aes::{
    self as aes_dukpt, AesDevice, AesKsn, KeyUsage, WorkingKeyType,
};
use isoswitch_session::crypto::dukpt::tdes::{self, TdesDevice, TdesKsn, Variant, MAX_COUNTER};
use isoswitch_session::crypto::keys::Key;
use isoswitch_session::crypto::mac::{compute, MacAlgorithm, Padding};
use isoswitch_session::crypto::pin::{Fill, Pan, Pin, PinBlock, PinBlockFormat};
use isoswitch_session::error::DukptError;
use isoswitch_session::SessionError;

fn key_hex(k: &Key) -> String {
    to_hex(&k.expose_secret())
}

/// Data rows of a table: lines whose first column is a row number or a KSN.
fn rows(table: &str) -> Vec<Vec<&str>> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|c| {
            c.first()
                .is_some_and(|f| f.bytes().all(|b| b.is_ascii_hexdigit()) && !f.is_empty())
        })
        .collect()
}

const BDK: &str = "0123456789ABCDEFFEDCBA9876543210";
const IKSN: &str = "FFFF9876543210E00000";

fn bdk() -> Key {
    Key::tdes(&hex(BDK)).expect("bdk")
}

fn ksn(s: &str) -> TdesKsn {
    TdesKsn::from_bytes(&hex(s)).expect("ksn")
}

const TDES_KEYS: &str = r"
 #  KSN                   counter  current key (published)           PIN key (computed)
 1  FFFF9876543210E00001  000001   042666B49184CFA368DE9628D0397BC9  042666B49184CF5C68DE9628D0397B36
 2  FFFF9876543210E00002  000002   C46551CEF9FD24B0AA9AD834130D3BC7  C46551CEF9FD244FAA9AD834130D3B38
 3  FFFF9876543210E00003  000003   0DF3D9422ACA56E547676D07AD6BADFA  0DF3D9422ACA561A47676D07AD6BAD05
 4  FFFF9876543210E00004  000004   279C0F6AEED0BE652B2C733E1383AE91  279C0F6AEED0BE9A2B2C733E1383AE6E
 5  FFFF9876543210E00005  000005   5F8DC6D2C845C125508DDC048093B83F  5F8DC6D2C845C1DA508DDC048093B8C0
 6  FFFF9876543210E00006  000006   5E415CB0BAF9F03CD0C14B63FB62FF43  5E415CB0BAF9F0C3D0C14B63FB62FFBC
 7  FFFF9876543210E00007  000007   0C8F780B7C8B49D0AE84A9EB2A6CE660  0C8F780B7C8B492FAE84A9EB2A6CE69F
 8  FFFF9876543210E00008  000008   27F66D5244FF62E1AA6F6120EDEB4280  27F66D5244FF621EAA6F6120EDEB427F
 9  FFFF9876543210E00009  000009   27E31064FDC565698900E2057F658E7E  27E31064FDC565968900E2057F658E81
10  FFFF9876543210E0000A  00000A   6CF2500A22507C7CC776CEADC1E33014  6CF2500A22507C83C776CEADC1E330EB
11  FFFF9876543210E0000B  00000B   3E8260BA04B2D620C01482B3819A18B7  3E8260BA04B2D6DFC01482B3819A1848
12  FFFF9876543210E0000C  00000C   B716E1E11CF53D80726CAEE75C3A624F  B716E1E11CF53D7F726CAEE75C3A62B0
13  FFFF9876543210E0000D  00000D   E072EDF95340535FB6C581C58FBF2533  E072EDF9534053A0B6C581C58FBF25CC
14  FFFF9876543210E0000E  00000E   A80046087F5B8F245AAD95E18429084F  A80046087F5B8FDB5AAD95E1842908B0
15  FFFF9876543210E0000F  00000F   93DD5B956C4878472E453AAEFD32A5AA  93DD5B956C4878B82E453AAEFD32A555
16  FFFF9876543210E00010  000010   59598DCBD9BD94C094165CE453585F57  59598DCBD9BD943F94165CE453585FA8
17  FFFF9876543210E00011  000011   2B5F01F4F0CC05EA639D523231BF1BA2  2B5F01F4F0CC0515639D523231BF1B5D
18  FFFF9876543210E00012  000012   9CF640F279C2AEE615F725EEEAC2CBAF  9CF640F279C2AE1915F725EEEAC2CB50
19  FFFF9876543210E00013  000013   C3DF489FDF1153B4F03DE97C27DC4C2F  C3DF489FDF11534BF03DE97C27DC4CD0
20  FFFF9876543210E00014  000014   658488507721B3F14737FA93F923CBD2  658488507721B30E4737FA93F923CB2D
21  FFFF9876543210E00015  000015   E161D1956A61F6D2F37AFD7F9CC3699A  E161D1956A61F62DF37AFD7F9CC36965
22  FFFF9876543210EFF800  0FF800   F9CDFEBF4F5B1D9EB3EC12454527E176  F9CDFEBF4F5B1D61B3EC12454527E189
23  FFFF9876543210EFF801  0FF801   5BEE92627E97825C911BF619DF72CA3B  5BEE92627E9782A3911BF619DF72CAC4
24  FFFF9876543210EFF802  0FF802   64CA2F8AB93F61B01620B00BF77C7301  64CA2F8AB93F614F1620B00BF77C73FE
25  FFFF9876543210EFF804  0FF804   35A168695B3BA83307E871C42021DD37  35A168695B3BA8CC07E871C42021DDC8
26  FFFF9876543210EFF808  0FF808   12C380FCB72ED3C26FC6079AF63F4787  12C380FCB72ED33D6FC6079AF63F4778
27  FFFF9876543210EFF810  0FF810   D8007C833A1E3C49C6889B97A68C54FF  D8007C833A1E3CB6C6889B97A68C5400
28  FFFF9876543210EFF820  0FF820   A9C9FF9B735FDD49591F296B0BF0FD70  A9C9FF9B735FDDB6591F296B0BF0FD8F
29  FFFF9876543210EFF840  0FF840   0E3E221062CB5E03A384602783A004FA  0E3E221062CB5EFCA384602783A00405
30  FFFF9876543210EFF880  0FF880   CA8225C587124DFBB87F279C0BE29727  CA8225C587124D04B87F279C0BE297D8
31  FFFF9876543210EFF900  0FF900   906AAC1751D4971A144D52C76C6E1F97  906AAC1751D497E5144D52C76C6E1F68
32  FFFF9876543210EFFA00  0FFA00   2B9E2CE7C2750337E10B54D2989EA6AF  2B9E2CE7C27503C8E10B54D2989EA650
33  FFFF9876543210EFFC00  0FFC00   F9430DF975082491C77BE4EF4FDB91EE  F9430DF97508246EC77BE4EF4FDB9111
34  FFFF9876543210F00000  100000   AA4D58DB653EC74A48C75F2F047DD2B5  AA4D58DB653EC7B548C75F2F047DD24A
";

const TDES_PIN_MAC: &str = r"
 #  KSN                   enc. PIN block    MAC req   MAC resp  CMAC req          CMAC resp
 1  FFFF9876543210E00001  1B9C1845EB993A7A  9CCC7817  20364223  211003F1D5B79DD7  82CC2B9B9EC710A6
 2  FFFF9876543210E00002  10A01C8D02C69107  F608A9BC  D1FCA6BE  4BA08A38CEEAF378  85E93BAC519203AC
 3  FFFF9876543210E00003  18DC07B94797B466  20B59A4F  BAD4CC9C  011D64E245203501  1D64CC655C4ABAEF
 4  FFFF9876543210E00004  0BC79509D5645DF7  C7BFA6CC  1EB08AEE  293A4DAE35BD9A5B  F51F47C89C7E0047
 5  FFFF9876543210E00005  5BC0AF22AD87B327  0202B963  5CBE3E81  2E1FC7D330CA6935  3210F49A556B7635
 6  FFFF9876543210E00006  A16DF70AE36158D8  CF6C72E6  C60D38E8  2172CAD92D8E2643  1262CCAA534C5CA2
 7  FFFF9876543210E00007  27711C16CB257F8E  B11EB0D9  053EFD39  CD19DFD6765E2671  FA55CEFF48FFB95D
 8  FFFF9876543210E00008  50E55547A5027551  3679055B  7FACA91D  EC08F36B4C4D3564  A7F5F5FF0CF24BAE
 9  FFFF9876543210E00009  536CF7F678ACFC8D  26AA23DC  37F17B8F  E62D342E24AAC2FC  C36ECC58DC74A17E
10  FFFF9876543210E0000A  EDABBA23221833FE  1632621C  CE038CC9  6B2D74E69A28ED7B  8A7D022E0AF9FF26
11  FFFF9876543210E0000B  2328981C57B4BDBA  76D95CB4  27C9FA5E  491ED0E8FD692995  599E8CD08EE3A2C6
12  FFFF9876543210E0000C  038D03CC926CF286  BAD9D84D  6D2ECC6A  0A169718B2EE9C9C  43EA8F371652CB41
13  FFFF9876543210E0000D  6C8AA97088B62C68  AAAFB598  7E40B492  1AB755B04273E8DC  4E4F5A88BB2887E0
14  FFFF9876543210E0000E  F17C9E1D72CD4950  4EC79532  55233989  6B713E41C3C68719  3678CAF221A0FCC6
15  FFFF9876543210E0000F  B170F6E7F7F2F64A  82500D05  AFE23CBA  CB7194BDEF5484C7  515FA5818568DB32
16  FFFF9876543210E00010  D5D9638559EF53D6  D39D3A59  9E933C88  02E5C57C3BE193AC  E66012C67D26DE0E
17  FFFF9876543210E00011  D544F8CDD292C863  F094AF93  631E7B39  468D652ACE1B0FE2  BB6437026AC0A53D
18  FFFF9876543210E00012  7A21BD10F36DC41D  A819AF04  E93F5E27  22A2F38B63B903F7  82E87BC1DBA843E2
19  FFFF9876543210E00013  78649BD17D0DFA60  79285A17  FCE7A5A5  4C751416E655769C  F598CACCCC066945
20  FFFF9876543210E00014  7E7E16EA0C31AD56  E2B2637F  A10E94AA  B9468A938E200B13  7329404F8509EEC1
21  FFFF9876543210E00015  72105C22EBC791E6  B2033EBD  BDA3AEE1  F738E1BDB61538C8  40BD2F3386FE2CE6
22  FFFF9876543210EFF800  33365F5CC6F23C35  23E3CB62  5776C376  863293575AA468D7  8E70A73A61185B55
23  FFFF9876543210EFF801  3A86BF003F835C9D  97623632  69D1EF47  9FC97AEB6623500D  1A0BC04A517375FB
24  FFFF9876543210EFF802  3DB977D05C36DF3F  72608521  BF7036B7  FD1FDB89F6BBE6E2  FA9521FEFE2C4A46
25  FFFF9876543210EFF804  BA83243305712099  D86687B7  645A0A18  193EA8355FBCC1B7  E3BFA1458E75DD35
26  FFFF9876543210EFF808  B0DA04AC90A36D85  5E00713D  E8D8026A  0133FCF11E332FAE  AA726F3F63E800A7
27  FFFF9876543210EFF810  2CF02BD9C309EEDA  1BCCF968  9623FF45  5EE7C5E80F1E7D40  1BFAC9BBBCC19AE9
28  FFFF9876543210EFF820  9D1E2F77AEEE81C6  2F6D2191  FF864D19  01847D97445DDEBE  30E769C7EA0A3B09
29  FFFF9876543210EFF840  40870B0F8BA2011C  4DA4CBAC  3CE7AD50  2A2020B7F9753FA7  08BF524BD1A7F45F
30  FFFF9876543210EFF880  22E340D6ABB40981  95C43BC2  73D03F0B  CD5561C8FD29A6F7  FA443C7457AD3066
31  FFFF9876543210EFF900  1A4C10AFBA03A430  D6BEAA71  5D461B71  D9270E022F9A8C4A  CB3C15FCE7591682
32  FFFF9876543210EFFA00  849763B43E5F9CFF  93930C9F  531DA5F9  4954EFE9E3125B2D  2A5AE1B2D2BDE612
33  FFFF9876543210EFFC00  DEFC6F09F8927B71  2917C6EF  AA8D2DA6  83562314178518ED  228289A6467F6E8D
34  FFFF9876543210F00000  73EC88AD0AC5830E  7DFA9315  1444BEC3  59B80A1E671114F3  30B60912D34F1348
";

const TDES_DATA: &str = r"
 #  KSN                   TDES-CBC(data-request key, IV 0, 24 bytes)
 1  FFFF9876543210E00001  FC0D53B7EA1FDA9EE68AAF2E70D9B9506229BE2AA993F04F
 2  FFFF9876543210E00002  A2B4E70F846E63D68775B7215EB4563DFD3037244C61CC13
 3  FFFF9876543210E00003  BD751E65F10E75B6C1D5B1D283496A36C2DE21D993C387A7
 4  FFFF9876543210E00004  1118F50947441BBDA3C8C70220021A12EC31CC473F7215F4
 5  FFFF9876543210E00005  9FD7BD1EC28845ACA93367A9DA9317BD555C6B33AE22D365
 6  FFFF9876543210E00006  DC526613AD9095C1CEC60C41B7686ED606AC1AA2F4F54912
 7  FFFF9876543210E00007  24700BD6F17751531F2A16CE2AF7731101E6F87839C67244
 8  FFFF9876543210E00008  5F6584DEAFC51B48A239B51C2DACA97176C01D9CA8EDC33C
 9  FFFF9876543210E00009  7CB9080923ED4D7D8D1B8A2849331684CC910522023BE537
10  FFFF9876543210E0000A  C221F5A8CA5DA909BE04938E0FB8DFCFB30ED0D62B590663
11  FFFF9876543210E0000B  98A271C13E4AEE80C6343867F2F0F6C55E8B7E5645866A0B
12  FFFF9876543210E0000C  273CBE2F275B1C29D53F3C01A24DEC73F92C3BE219FFCB91
13  FFFF9876543210E0000D  7290CB9D6F6E35A9B8A34C590A93696F8FE0137A8558884C
14  FFFF9876543210E0000E  48207931E5F6E5E3E02E7E1D7BED4E3232FCA67E66A31F61
15  FFFF9876543210E0000F  166246602B1255114A4012513B0DD4A9E19E82C945860C55
16  FFFF9876543210E00010  53EDA44BDBCA037B2D3FEAEBAF73499336767BD1D0D09679
17  FFFF9876543210E00011  086F3F46238B99AFB35DA42029675EE1FAB1C606307B35FB
18  FFFF9876543210E00012  270439430E60BFC600FE3DC7E7AD8C72D22D5284EC676EF2
19  FFFF9876543210E00013  2FEAE132FA0E46B4ABF55A87477AFA907E598868BCC236DA
20  FFFF9876543210E00014  A16A61328E36A21858B5FBFBE7BAF7985F5C54F5B8C12298
21  FFFF9876543210E00015  42A9342FD5C1ACD20E137950A7368D2BBE884275B7906918
22  FFFF9876543210EFF800  5FF8C648565975E746C0CB7B1157DCB6EC3C5F25E82F8A62
23  FFFF9876543210EFF801  55374FDBB3B2B4ED0751243FC0C54DB1F3F3CF76F0C0B3C4
24  FFFF9876543210EFF802  74A1250E3234DEDEB422FA7F862C484BBA6924DF9BC32CE5
25  FFFF9876543210EFF804  159E9FA8E979A9C76C118C7BE9E5D436AC0B22CD098BAE1F
26  FFFF9876543210EFF808  F87F61877DFF1CD39A635BEA4D15F81D30793B9157805BE4
27  FFFF9876543210EFF810  4DEA2DDA8D079F8040CAD885C29A4037E9490480256D074D
28  FFFF9876543210EFF820  CE625FFBBB339C8305FA86CBFD192F4292B29962649947DD
29  FFFF9876543210EFF840  29DDF3F2C3B9BE76A8338E2B22BA668B68B46AAE9C714607
30  FFFF9876543210EFF880  9E9AA50594849DEB63BC3EF3BE63C5637F03D03B0DCFA973
31  FFFF9876543210EFF900  C653AFCD3245ADB3B113FFC48B46BD0B6C5B3B5FB10044EE
32  FFFF9876543210EFFA00  50EB117D8CB2BE5ADBBE98B6570C557C13622688A61D559D
33  FFFF9876543210EFFC00  A2C773BC45B277E3F100C37E30A6A6FB1865134815B05EBC
34  FFFF9876543210F00000  1E830E7F53FC171E35380145320233EF9C6F3B08CED984AB
";

const TDES_VARIANTS: &str = r"
KSN FFFF9876543210E00001 (row 1)
  MAC request key    042666B4918430A368DE9628D03984C9
  MAC response key   042666B46E84CFA368DE96282F397BC9
  data request key   448D3F076D8304036A55A3D7E0055A78
  data response key  AD7BFC8B06AD3A08A560B4105CF8D9E5
KSN FFFF9876543210E00002 (row 2)
  MAC request key    C46551CEF9FDDBB0AA9AD834130DC4C7
  MAC response key   C46551CE06FD24B0AA9AD834EC0D3BC7
  data request key   F1BE73B36135C5C26CF937D50ABBE5AF
  data response key  C1C0E2D663C50EE9C001E56D3793A479
KSN FFFF9876543210E00003 (row 3)
  MAC request key    0DF3D9422ACAA9E547676D07AD6B52FA
  MAC response key   0DF3D942D5CA56E547676D07526BADFA
  data request key   EEEEF522C67239E4A2A65FEBF4C511F4
  data response key  6A21701227FA12E8952E89A0F6695862
KSN FFFF9876543210E00015 (row 21)
  MAC request key    E161D1956A6109D2F37AFD7F9CC3969A
  MAC response key   E161D1959561F6D2F37AFD7F63C3699A
  data request key   D9AE3E62F5E3CA2C357E37F500D9F314
  data response key  8F74DDD91FD88819B121AFE84CCAE958
KSN FFFF9876543210EFF800 (row 22)
  MAC request key    F9CDFEBF4F5BE29EB3EC124545271E76
  MAC response key   F9CDFEBFB05B1D9EB3EC1245BA27E176
  data request key   A9E03F541E29B4FDD47141AECF25190B
  data response key  A9C3793792E0AEB5A604358D0FA7FB97
KSN FFFF9876543210F00000 (row 34)
  MAC request key    AA4D58DB653E384A48C75F2F047D2DB5
  MAC response key   AA4D58DB9A3EC74A48C75F2FFB7DD2B5
  data request key   FE4BFE999550B26CC7D6A3602046612D
  data response key  4EC0D29E9CAED5EB53687C593EDD80CB
";

const AES128_KEYS: &str = r"
Initial key (AES128)  1273671EA26AC29AFA4D1084127652A1

 KSN                       derivation key (AES128)           PIN key (AES128, usage 1000)
 123456789012345600000001  4F21B565BAD9835E112B6465635EAE44  AF8CB133A78F8DC2D1359F18527593FB
 123456789012345600000002  2F34D68DE10F68D38091A73B9E7C437C  D30BDC73EC9714B000BEC66BDB7B6D09
 123456789012345600000003  031504E530365CF81264238540518318  7D69F01F3B45449F62C7816ECE723268
 123456789012345600000004  0EEFC7ADA628BA68878DA9165A8A1887  91A0588318EC2673214271F70137896E
 123456789012345600000005  C2A7AC328A5DA2D6002D62465BFC028B  35A43BC9EFEB09C756204B57E3FB7D4D
 123456789012345600000006  D30F7D9351DA58448A2F5E92B4EE3B7D  02DCC6CD1201A3A2CA7099559C862123
 123456789012345600000007  A8253CEED9AC042C54F75D35C8352278  6ECF912F3B18CA11A7A27BB60705FD09
 123456789012345600000008  718EE6CF0B27E53D5F7AF99C4D8146A2  4D9DF3FBEE3448FC3E676D04320A90F5

 KSN                       MAC-gen key (AES128, 2000)        data-encrypt key (AES128, 3000)
 123456789012345600000001  A2DC23DE6FDE0824A2BC321E08E4B8B7  A35C412EFD41FDB98B69797C02DCD08F
 123456789012345600000002  484C3B06E8562704528CD5B46FB12FB6  D639514AA33AC43AD9229E433D6D4E5B
 123456789012345600000003  A5DF7D9D800CA769766F0C77CA4E6E6C  EF17F6AB45B4820C93A3DCB21BC491AD
 123456789012345600000004  E6E4679647D8A9057C1FC15537CB4C4E  B3BD44C08BB6BA27C3BB4711D7D70387
 123456789012345600000005  0588185FE1FF8C7E22FAD78C1C61F065  CA02DF6F30B39E14BD0B4A30E460920F
 123456789012345600000006  7B60F72A5639C0EE7EB2100FA80BB793  C9B8A7C4E486180B2229115164F0B293
 123456789012345600000007  BAA08CA263C69525BC6B1BA8F4275D69  0FA8F1F0A2DD7B1005A862D77CDED698
 123456789012345600000008  6FD572E5D59E618875F193484F9178FB  650F34204ABD4E57764D61AC3D266FB1
";

const AES128_PINBLOCKS: &str = r"
PIN 1234, PAN 4111111111111111
PIN field   441234AAAAAAAAAA2F69ADDE2E9E7ACE   (random fill 2F69ADDE2E9E7ACE)
PAN field   44111111111111111000000000000000
method      A = AES(K, PIN field); B = A XOR PAN field; block = AES(K, B)

 123456789012345600000001  A912150391AB65A67E52883D81CE2D15
 123456789012345600000002  52A00503BD34BA1383F6A7EE9FE2547F
 123456789012345600000003  A5A27E82B43A9A866A93D7ABE89CEF93
 123456789012345600000004  71B3D0528669498777555A8BE6698E44
 123456789012345600000005  881A7F77A2E04E5BEA985E342FD0B628
 123456789012345600000006  BDC1C3871AFB0B340AA5B5CEFD08695E
 123456789012345600000007  4A8E6B8C7DBEE6CBA6DC774F0CB83396
 123456789012345600000008  8308BB857C17F390369F761F8EB358FA

intermediates, counter 1 (computed): A DE84127CF6DCA7DFE47BDE89057CB820  B 9A95036DE7CDB6CEF47BDE89057CB820
intermediates, counter 2 (computed): A 37489F3DB975A040CD1EEE9E68051A44  B 73598E2CA864B151DD1EEE9E68051A44
";

const AES128_OTHER: &str = r"
 KSN                       derivation key (AES128)
 12345678901234560001FFFE  E21E8C8D347F8561A2BE752DAA85A111
 12345678901234560001FFFF  1FE368988089CDD76DA18A3458E113BA
 123456789012345600020000  F7AE9025468A25D37B7249CFFED224C8
 123456789012345600020001  692C8EA4013645135B36497131DF9D2C
 1234567890123456FFFE2000  48E585B694EB0B18D5C35443E163C0BA
 1234567890123456FFFE4000  396C2C7CA1EA701C03B86B7D41F0C562
 1234567890123456FFFE8000  0387625F189B58AE03EF0E8CCA41105E
 1234567890123456FFFF0000  F6BA59389BD14A9855BE9727E7C52E3C
";

const AES_UPDATE: &str = r"
AES-128 BDK  AES128 update key  9A9770AEE1ACD1B13473D0463A1883B9   (bottom of page 7)
AES-128 BDK  TDES2  update key  4744A5ECBC62B5C4BB76FBEAE1E244A3   (middle of page 24)
AES-128 BDK  TDES3  update key  AF82BE8533CFCA526DA71708667AD0BBC7A7517504C78C8A   (top of page 30)
AES-256 BDK  AES128 update key  90E54E4A70160C7E085C09D2B241D343   (middle of page 12)
AES-256 BDK  AES256 update key  AEFB210C136278A1279F7C8815F446DB8EBE2AA910B157AA4E6484D8DE9C4807   (bottom of page 18)
derivation key at FFFFFFFF (computed): AES-128 BDK 36C6EBBCC0536FC91C1D50660D4F82AE
                                       AES-256 BDK 39064FDC8373D710AFAA823E757E59190C92DD8FBF86B87B673632F4E04C97D2
";

const AES256: &str = r"
Initial key (AES256)  CE9CE0C101D1138F97FB6CAD4DF045A7083D4EAE2D35A31789D01CCF0949550F

KSN 123456789012345600000001
  derivation key   AES256  54AC2B32B145EA4A554CB8BC44B17467063A799856B1CCC2A138D36E8DBF78B3
  PIN key          AES128  09C9C432966811D6B2C3336BAC1B1202
  PIN key          AES256  8C1AB7BEE973829E30242E0BBBDD4946D540C98FC1B5BDCF94790001A23FD502
  MAC-gen key      AES128  F04A1FABD4176E15490CEC82E217A96D
  MAC-gen key      AES256  61DABDF4B340CF461EE860B1D1AB55357142BD2D6977306859CF49AEFE8F1549
  data-encrypt key AES128  616D59AE91F8CC7016F89FDA29605FA4
  data-encrypt key AES256  71EB36C9A6B7F801D1D1700C29741FC5A5C4E9B45D742DA7AF6992B8AA29AF58
KSN 123456789012345600000002
  derivation key   AES256  5DD5A0253842BBBE1D7C0DA27021412C6F1FAB53FB928DEAE56DA06090A9DE97
  PIN key          AES128  D632226A80795D13A80AFE66A3E97B01
  PIN key          AES256  3583D6CD02FC38822CC71A8D7678E04F4A8556335E6CC66863D3DADC5AEE2C62
  MAC-gen key      AES128  DD99D77B4E2AB538B26BB6A8B3FB0BE3
  MAC-gen key      AES256  4417356219B2F93CE3F2671623DDCAB58A8B85AD80662A8D628024000956D426
  data-encrypt key AES128  07B79D9BFF3633C07A9FDDF132070B30
  data-encrypt key AES256  D0AC9F71F875FFFF3A83778F72F39EBB0924A5A526617AF669665E0A19725465
KSN 123456789012345600000003
  derivation key   AES256  8EEEF7C464AE415BB1D73FAED21993CD669F7999092A579EC6DD3CC680C65171
  PIN key          AES128  C2CBD3D766B16F9F82F4EE3F74478918
  PIN key          AES256  96A1AB5D37CB7CF81DDE64F66C46E0389B833E7AD5F4E44C791F04FAFDA6DA0E
  MAC-gen key      AES128  5A742A4A0403B3D7BB30842DAFBB5972
  MAC-gen key      AES256  35BD00A46F2A2BD127F565FBF2974B735AE3BB70242C0A415857CF69B2C2691A
  data-encrypt key AES128  706E4E629E466BED956548E7B0D90C3D
  data-encrypt key AES256  8E70D5DF53F48ED2F2A0B54FC4F45C844579BE96F6F161222CDD50193E2F737F
KSN 123456789012345600000004
  derivation key   AES256  C18CBED570B3B89ECADA7CEC9C224CD5A86ECF3DE377D3EFAB720F8C4D76B9D0
  PIN key          AES128  58A3779C1E24B3EDAF068609E7E56D59
  PIN key          AES256  420AA584BF215C4777E93009B56D08DE80687021D07ED96349FF71379CE5636D
  MAC-gen key      AES128  C531F7E08514858C445D5F54BFE7DA8E
  MAC-gen key      AES256  D80617C3C5869A8DCF0DA5383D032A0D6E6C51C0BF649BE992BE84AA191AE326
  data-encrypt key AES128  CF3A4D9CA7E962E4023A84A2FE47DC80
  data-encrypt key AES256  41D23F7D78E22A978D726BC71D266374263120EE49146CE5C1291FD0EE7DDD31
KSN 123456789012345600000005
  derivation key   AES256  6B3C3C93307151C25DC2309456F01C5C3108DAD571C321899A9B7E0C009FD2EB
  PIN key          AES128  97504C8BB0FD4D4A88D605143BF00025
  PIN key          AES256  B1E9E3D918952E6E5F67917F0FE77060F865AE27DCAD5742DDF90F61453B98BA
  MAC-gen key      AES128  E2E25AA7FE6E5DD6042C632A5DFED945
  MAC-gen key      AES256  8B047E32C476C0A0AF90A9B8D1C247C433E3D4C1DF1C7FC52E8CB1DC4C8FB275
  data-encrypt key AES128  94C28455AEAD970555F326298557FA81
  data-encrypt key AES256  813D156C142E5BB8F136427EBD0A1AC4DC9B2B5963C481F5E0A58F4BF33BD185
KSN 123456789012345600000006
  derivation key   AES256  B8BB61AE3E2D5CD8C699E0C578FB2C7B89B0C0CF02DBAB60864D8049C986C844
  PIN key          AES128  BF281141609E6CAE7DF10DFA47A8D03D
  PIN key          AES256  8714EB94E3BFD3018EC99D0434D9C94F071AF2EEBF4332FB14F5179793AA582C
  MAC-gen key      AES128  07B215929C5DB4262DECEE4A0336DD4F
  MAC-gen key      AES256  A2FF6FFB37CB8042B8C9B2F94C90C83D94DD5BECCD9951CFAB0BE7BD865CA403
  data-encrypt key AES128  408D3B9A7D1AF109E2F689514BF79AC7
  data-encrypt key AES256  F1FB0591AA2E45E1CE4C5D970C7396C4A87E53E5900C4A6D95C174140CC0AC9C
KSN 123456789012345600000007
  derivation key   AES256  88D0ACA287B3066F5DE0C93396337D4C2DA8D92C1F720A576D62CEB4C979E01E
  PIN key          AES128  B7C6BB187134E9D429C3E8B7CCBD8477
  PIN key          AES256  693C893A1E81D280302E0A47E7E634337B9A9B26E7CC6064D807E08FF911AFAC
  MAC-gen key      AES128  3AC9CC5159F96E10FCC5EB64015AC76A
  MAC-gen key      AES256  E8A57085DBE804B8C2767F9F77D54854861E99633A062C700B4E50A865153150
  data-encrypt key AES128  DC2915BF421D617E7725E63A7DACB18D
  data-encrypt key AES256  69BC5C9AFB2C93CC30C3F7529360B34D7B64B7206E0F0940D8654378C54824F2
KSN 123456789012345600000008
  derivation key   AES256  20A796D5077D51B8E7613893A4F095B134E02917DC84BD391F3661D0873FF308
  PIN key          AES128  53C1C60A65532313141A102AD720E967
  PIN key          AES256  173A45284262A3E292D86D08FD6DE9167963214450D1D48F6103BD2EB08E61B5
  MAC-gen key      AES128  6E94A9283EA9AEB7EAA77C3FF55FF2D1
  MAC-gen key      AES256  949A3FEF12DBD273DD25BB60E29BBE313C872A9DE3BE03A7E29626ACA0A42880
  data-encrypt key AES128  8950DD50C254C60E26737CA9229F0F18
  data-encrypt key AES256  0BF8789A21D068410A16C9F7FCBF65A7B4FF73203ADC0F1B4B5E5BF8050E4284

 KSN                       derivation key (AES256)
 12345678901234560001FFFE  A289508CBF1228452CD86AB77B15CB35577AC828C18BB66681E5A16D6C9CCED3
 12345678901234560001FFFF  7C1F24BC33C5B146E1D3015126F4AC2E0C48AC080DC9234137B82890E8E91FB8
 123456789012345600020000  D62DDA94A47D7DA5D763443B4ECB15EA8DD62E0E4F915958BA459591F8312E37
 123456789012345600020001  44110A1102748D4A3AC326F53D8CAC650212590CA7126D54546DDE0F20E89CEE
 1234567890123456FFFE2000  4625EB06E4886D4AFCC9AE37ED4F4E4E1653C9E60E3F24742A87A26AA96AB7A6
 1234567890123456FFFE4000  FF20E1BB575539ACCB44E3111BE8757F83AE8549A2DD71B441A4A424F7FFD4B1
 1234567890123456FFFE8000  630535C9C53E1EC6524016930B56F6728909C45403536B419AEBCB25B7351C07
 1234567890123456FFFF0000  6D6DB7AAAE8B3EA90E57A39E4BBA71E173B21B446B30A78D64BFC6A8806C55EE
";

const AES_ALL_USAGES: &str = r"
usage            AES128                            TDES2                             TDES3
1000 PIN         AF8CB133A78F8DC2D1359F18527593FB  630C706D9546E47D4449313F61C4D4AB  EA8B3F37EB9B15831167EF2977FD8762D9B5913F35766F6A
2000 MAC gen     A2DC23DE6FDE0824A2BC321E08E4B8B7  5D8FD787E8A796D07035FFCA9B5800BB  2A1061A6EAC2C14FAC3758EA07B3648A624B24E942785BF1
2001 MAC verify  DBB463945B286C07CD3AD82EE96FD9C9  6E3C92D7ED09179ADE798132884CE39B  DB21CEA7BE86316A520DA80C246B2F2D9528DC9D59E46FBF
2002 MAC both    85675439D18D7F1158BD8E3EAA3D502B  EFE2487DDF153D21A22EC40F36355DCA  E0DC5CE8BA55B39E6029EA9F6577BB0623092F6CA9DC4D19
3000 data enc    A35C412EFD41FDB98B69797C02DCD08F  BD44121C223F831446A01EE3A4CB58D2  F716DFBC6B2D2D5825B694EEEE181A013F2F1C09380BBE0C
3001 data dec    16292C6EA8F64C5420A0584BFBC577BE  B09EB168607B9222D700F735D2A4A0D3  E30D64F14F88CD8F4F5E408150E99ABF0780E8F0AC7B64C1
3002 data both   A308E080DD15A1B741F1721BF67DE11C  4473F9D031694D7E58D9D4F87F83072D  A11DB51890FCA90791D7E737AA37DB20F9E2B35263013CD2
0002 KEK         36A724B7BEFA5A25F5E7B5782A4554A2  7ECDDAE94A937E6B6E9EE2CFDAE3776E  DEB47DF59498152217A65F140F015BEC3EC49F4AA7683748
";

#[test]
fn tdes_ipek_x9_24_1_a4() {
    let ipek = tdes::derive_ipek(&bdk(), &ksn(IKSN)).expect("ipek");
    assert_eq!(key_hex(&ipek), "6AC292FAA1315B4D858AB3A3D7D5933A");
    // The counter is ignored.
    let again = tdes::derive_ipek(&bdk(), &ksn("FFFF9876543210E00015")).expect("ipek");
    assert_eq!(key_hex(&again), key_hex(&ipek));
}

#[test]
fn tdes_current_and_pin_keys_all_34_rows() {
    let r = rows(TDES_KEYS);
    assert_eq!(r.len(), 34);
    let ipek = tdes::derive_ipek(&bdk(), &ksn(IKSN)).expect("ipek");
    for row in r {
        let k = ksn(row[1]);
        assert_eq!(format!("{:06X}", k.counter()), row[2]);
        let tk = tdes::derive_transaction_key(&bdk(), &k).expect("derive");
        assert_eq!(
            key_hex(&tk.current().expect("key")),
            row[3],
            "row {}",
            row[0]
        );
        // From the IPEK, as a host holding initial keys would.
        let from_ipek = tdes::derive_current_key(&ipek, &k).expect("derive");
        assert_eq!(key_hex(&from_ipek.current().expect("key")), row[3]);
        // PIN key: computed in the file, confirmed by the published PIN blocks below.
        let pin = tdes::derive_working_key(&bdk(), &k, Variant::Pin).expect("pin key");
        assert_eq!(key_hex(&pin), row[4], "row {}", row[0]);
    }
}

#[test]
fn tdes_pin_blocks_and_x9_19_macs_all_34_rows() {
    let r = rows(TDES_PIN_MAC);
    assert_eq!(r.len(), 34);
    let pan = Pan::new("4012345678909").expect("pan");
    let pin = Pin::new("1234").expect("pin");
    let data = hex("3430313233343536373839303944393837");
    for row in r {
        let tk = tdes::derive_transaction_key(&bdk(), &ksn(row[1])).expect("derive");
        let pik = tk.variant(Variant::Pin).expect("pin key");
        let block = PinBlock::encipher(PinBlockFormat::Iso0, &pin, Some(&pan), &pik, Fill::Random)
            .expect("encipher");
        assert_eq!(to_hex(block.as_bytes()), row[2], "PIN block row {}", row[0]);
        // And the host side deciphers the published block.
        let published = PinBlock::from_bytes(PinBlockFormat::Iso0, &hex(row[2])).expect("block");
        assert_eq!(published.decipher(Some(&pan), &pik).expect("pin"), pin);

        let mac = |v: Variant| {
            let k = tk.variant(v).expect("mac key");
            let m = compute(MacAlgorithm::X919(Padding::Method1), &k, &data).expect("mac");
            to_hex(&m.as_bytes()[..4])
        };
        assert_eq!(mac(Variant::MacRequest), row[3], "MAC req row {}", row[0]);
        assert_eq!(mac(Variant::MacResponse), row[4], "MAC resp row {}", row[0]);
    }
}

fn tdes_cbc_zero_iv(key: &[u8], data: &[u8]) -> Vec<u8> {
    let c = TdesEde2::new_from_slice(key).expect("tdes");
    let mut prev = [0u8; 8];
    let mut out = Vec::new();
    for chunk in data.chunks(8) {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        for i in 0..8 {
            b[i] ^= prev[i];
        }
        c.encrypt_block((&mut b).into());
        prev = b;
        out.extend_from_slice(&b);
    }
    out
}

#[test]
fn tdes_request_data_encryption_all_34_rows() {
    let r = rows(TDES_DATA);
    assert_eq!(r.len(), 34);
    let data = hex("3430313233343536373839303944393837");
    for row in r {
        let k = tdes::derive_working_key(&bdk(), &ksn(row[1]), Variant::DataRequest).expect("key");
        assert_eq!(
            to_hex(&tdes_cbc_zero_iv(&k.expose_secret(), &data)),
            row[2],
            "row {}",
            row[0]
        );
    }
}

/// Section 1.4 is computed (pydukpt), not published; the MAC and data-request keys are
/// confirmed by the published MACs and ciphertexts above.
#[test]
fn tdes_variant_keys_computed_cross_check() {
    let mut current = None;
    let mut n = 0;
    for line in TDES_VARIANTS.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("KSN ") {
            current = Some(ksn(rest.split_whitespace().next().expect("ksn")));
            continue;
        }
        let Some(k) = current else { continue };
        let (variant, value) = if let Some(v) = l.strip_prefix("MAC request key") {
            (Variant::MacRequest, v)
        } else if let Some(v) = l.strip_prefix("MAC response key") {
            (Variant::MacResponse, v)
        } else if let Some(v) = l.strip_prefix("data request key") {
            (Variant::DataRequest, v)
        } else if let Some(v) = l.strip_prefix("data response key") {
            (Variant::DataResponse, v)
        } else {
            continue;
        };
        let key = tdes::derive_working_key(&bdk(), &k, variant).expect("key");
        assert_eq!(key_hex(&key), value.trim(), "{k} {variant:?}");
        n += 1;
    }
    assert_eq!(n, 24);
}

#[test]
fn tdes_device_walks_the_published_sequences() {
    let ipek = tdes::derive_ipek(&bdk(), &ksn(IKSN)).expect("ipek");
    let r = rows(TDES_KEYS);
    // A.4.2: a freshly loaded device, transactions 1..=21.
    let mut dev = TdesDevice::load_initial_key(&ipek, &ksn(IKSN)).expect("load");
    for row in &r[..21] {
        assert_eq!(
            dev.next_ksn().map(|k| k.to_string()).as_deref(),
            Some(row[1])
        );
        let t = dev.next_transaction().expect("transaction");
        assert_eq!(t.ksn().to_string(), row[1]);
        assert_eq!(
            key_hex(&t.current().expect("key")),
            row[3],
            "row {}",
            row[0]
        );
    }
    // A.4.3: from counter 0FF800, across the counters with more than ten 1 bits
    // (after 0FFC00 comes 100000).
    let mut dev = TdesDevice::resume(&ipek, &ksn("FFFF9876543210EFF800")).expect("resume");
    for row in &r[21..] {
        let t = dev.next_transaction().expect("transaction");
        assert_eq!(t.ksn().to_string(), row[1]);
        assert_eq!(
            key_hex(&t.current().expect("key")),
            row[3],
            "row {}",
            row[0]
        );
    }
}

#[test]
fn tdes_device_matches_host_for_the_first_600_transactions() {
    let ipek = tdes::derive_ipek(&bdk(), &ksn(IKSN)).expect("ipek");
    let mut dev = TdesDevice::load_initial_key(&ipek, &ksn(IKSN)).expect("load");
    let mut last = 0;
    for _ in 0..600 {
        let t = dev.next_transaction().expect("transaction");
        let c = t.ksn().counter();
        assert!(c > last && c.count_ones() <= 10, "{c:#X}");
        last = c;
        let host = tdes::derive_transaction_key(&bdk(), t.ksn()).expect("host");
        assert_eq!(
            key_hex(&t.variant(Variant::Pin).expect("k")),
            key_hex(&host.variant(Variant::Pin).expect("k"))
        );
    }
}

#[test]
fn tdes_device_exhausts_after_max_counter() {
    let ipek = tdes::derive_ipek(&bdk(), &ksn(IKSN)).expect("ipek");
    let mut dev = TdesDevice::resume(&ipek, &ksn("FFFF9876543210FFF000")).expect("resume");
    let mut seen = Vec::new();
    while let Ok(t) = dev.next_transaction() {
        let host = tdes::derive_transaction_key(&bdk(), t.ksn()).expect("host");
        assert_eq!(
            key_hex(&t.current().expect("k")),
            key_hex(&host.current().expect("k"))
        );
        seen.push(t.ksn().counter());
    }
    // 1FF000 (nine 1 bits), then the twelve counters with a tenth bit, the last 1FF800.
    assert_eq!(seen.len(), 13, "{seen:X?}");
    assert_eq!(seen.last().copied(), Some(MAX_COUNTER));
    assert!(dev.next_ksn().is_none());
    assert!(matches!(
        dev.next_transaction(),
        Err(SessionError::Dukpt(DukptError::Exhausted))
    ));
    // A device cannot resume at a counter it never uses.
    assert!(matches!(
        TdesDevice::resume(&ipek, &ksn("FFFF9876543210E007FF")),
        Err(SessionError::Dukpt(DukptError::CounterNotUsable {
            ones: 11,
            ..
        }))
    ));
}

#[test]
fn tdes_bad_inputs_are_typed() {
    assert!(matches!(
        TdesKsn::from_bytes(&[0u8; 12]),
        Err(SessionError::Dukpt(DukptError::KsnLength {
            expected: 10,
            found: 12
        }))
    ));
    let aes = Key::aes(&[1u8; 16]).expect("aes");
    assert!(matches!(
        tdes::derive_ipek(&aes, &ksn(IKSN)),
        Err(SessionError::Dukpt(DukptError::BaseKeyKind { .. }))
    ));
    let tdes3 = Key::tdes(&[1u8; 24]).expect("tdes3");
    assert!(tdes::derive_ipek(&tdes3, &ksn(IKSN)).is_err());
}

// --- AES -------------------------------------------------------------------

const AES128_BDK: &str = "FEDCBA9876543210F1F1F1F1F1F1F1F1";
const AES256_BDK: &str = "FEDCBA9876543210F1F1F1F1F1F1F1F1FEDCBA9876543210F1F1F1F1F1F1F1F1";
const IKID: [u8; 8] = [0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x34, 0x56];

fn aksn(s: &str) -> AesKsn {
    AesKsn::from_bytes(&hex(s)).expect("ksn")
}

fn wk(bdk: &Key, ksn: &str, usage: KeyUsage, ty: WorkingKeyType) -> String {
    key_hex(&aes_dukpt::derive_working_key(bdk, &aksn(ksn), usage, ty).expect("derive"))
}

fn table_after<'a>(text: &'a str, header_word: &str) -> Vec<Vec<&'a str>> {
    let start = text.find(header_word).expect("header");
    rows(&text[start..])
}

#[test]
fn aes128_initial_derivation_and_working_keys() {
    let bdk = Key::aes(&hex(AES128_BDK)).expect("bdk");
    let ik = aes_dukpt::derive_initial_key(&bdk, &IKID).expect("ik");
    assert_eq!(key_hex(&ik), "1273671EA26AC29AFA4D1084127652A1");
    let first = table_after(AES128_KEYS, "derivation key (AES128)");
    let first: Vec<_> = first.into_iter().take(8).collect();
    for row in &first {
        let dk = aes_dukpt::derive_derivation_key(&ik, &aksn(row[0])).expect("dk");
        assert_eq!(key_hex(&dk), row[1], "{}", row[0]);
        assert_eq!(
            wk(
                &bdk,
                row[0],
                KeyUsage::PinEncryption,
                WorkingKeyType::Aes128
            ),
            row[2]
        );
    }
    let second = table_after(AES128_KEYS, "MAC-gen key (AES128, 2000)");
    assert_eq!(second.len(), 8);
    for row in &second {
        assert_eq!(
            wk(
                &bdk,
                row[0],
                KeyUsage::MacGeneration,
                WorkingKeyType::Aes128
            ),
            row[1]
        );
        assert_eq!(
            wk(
                &bdk,
                row[0],
                KeyUsage::DataEncryption,
                WorkingKeyType::Aes128
            ),
            row[2]
        );
    }
}

#[test]
fn aes128_format4_pin_blocks_page_31() {
    let bdk = Key::aes(&hex(AES128_BDK)).expect("bdk");
    let pan = Pan::new("4111111111111111").expect("pan");
    let pin = Pin::new("1234").expect("pin");
    let fill: Vec<u8> = "2F69ADDE2E9E7ACE"
        .chars()
        .map(|c| c.to_digit(16).expect("hex") as u8)
        .collect();
    let r = rows(AES128_PINBLOCKS);
    let r: Vec<_> = r.into_iter().filter(|c| c[0].len() == 24).collect();
    assert_eq!(r.len(), 8);
    for row in r {
        let k = aes_dukpt::derive_working_key(
            &bdk,
            &aksn(row[0]),
            KeyUsage::PinEncryption,
            WorkingKeyType::Aes128,
        )
        .expect("pin key");
        let b = PinBlock::encipher(
            PinBlockFormat::Iso4,
            &pin,
            Some(&pan),
            &k,
            Fill::Nibbles(&fill),
        )
        .expect("encipher");
        assert_eq!(to_hex(b.as_bytes()), row[1], "{}", row[0]);
    }
}

#[test]
fn aes_other_counters_including_one_with_17_bits() {
    for (bdk_hex, table) in [(AES128_BDK, AES128_OTHER), (AES256_BDK, AES256)] {
        let bdk = Key::aes(&hex(bdk_hex)).expect("bdk");
        let ik = aes_dukpt::derive_initial_key(&bdk, &IKID).expect("ik");
        let r: Vec<_> = rows(table)
            .into_iter()
            .filter(|c| {
                c.len() == 2 && c[0].len() == 24 && !c[0].starts_with("12345678901234560000")
            })
            .collect();
        assert_eq!(r.len(), 8, "{bdk_hex}");
        for row in r {
            let dk = aes_dukpt::derive_derivation_key(&ik, &aksn(row[0])).expect("dk");
            assert_eq!(key_hex(&dk), row[1], "{}", row[0]);
        }
    }
}

#[test]
fn aes_update_keys_including_tdes_from_an_aes_bdk() {
    let b128 = Key::aes(&hex(AES128_BDK)).expect("bdk");
    let b256 = Key::aes(&hex(AES256_BDK)).expect("bdk");
    let ksn = "1234567890123456FFFFFFFF";
    let mut n = 0;
    for line in AES_UPDATE.lines() {
        let c: Vec<&str> = line.split_whitespace().collect();
        if c.len() < 5 || c[3] != "update" {
            continue;
        }
        let bdk = if c[0] == "AES-128" { &b128 } else { &b256 };
        let ty = match c[2] {
            "AES128" => WorkingKeyType::Aes128,
            "AES256" => WorkingKeyType::Aes256,
            "TDES2" => WorkingKeyType::Tdes2,
            "TDES3" => WorkingKeyType::Tdes3,
            other => panic!("{other}"),
        };
        assert_eq!(wk(bdk, ksn, KeyUsage::KeyEncryption, ty), c[5], "{line}");
        n += 1;
    }
    assert_eq!(n, 5);
    let ik = aes_dukpt::derive_initial_key(&b128, &IKID).expect("ik");
    let dk = aes_dukpt::derive_derivation_key(&ik, &aksn(ksn)).expect("dk");
    assert_eq!(key_hex(&dk), "36C6EBBCC0536FC91C1D50660D4F82AE");
}

#[test]
fn aes256_bdk_all_published_keys() {
    let bdk = Key::aes(&hex(AES256_BDK)).expect("bdk");
    let ik = aes_dukpt::derive_initial_key(&bdk, &IKID).expect("ik");
    assert_eq!(
        key_hex(&ik),
        "CE9CE0C101D1138F97FB6CAD4DF045A7083D4EAE2D35A31789D01CCF0949550F"
    );
    let mut current = String::new();
    let mut n = 0;
    for line in AES256.lines() {
        let c: Vec<&str> = line.split_whitespace().collect();
        if c.first() == Some(&"KSN") {
            current = c[1].to_string();
            continue;
        }
        if current.is_empty() || c.len() < 3 {
            continue;
        }
        let value = *c.last().expect("value");
        let ty = match c[c.len() - 2] {
            "AES128" => WorkingKeyType::Aes128,
            "AES256" => WorkingKeyType::Aes256,
            _ => continue,
        };
        let label = c[..c.len() - 2].join(" ");
        let got = match label.as_str() {
            "derivation key" => {
                key_hex(&aes_dukpt::derive_derivation_key(&ik, &aksn(&current)).expect("dk"))
            }
            "PIN key" => wk(&bdk, &current, KeyUsage::PinEncryption, ty),
            "MAC-gen key" => wk(&bdk, &current, KeyUsage::MacGeneration, ty),
            "data-encrypt key" => wk(&bdk, &current, KeyUsage::DataEncryption, ty),
            other => panic!("{other}"),
        };
        assert_eq!(got, value, "{current} {label} {ty:?}");
        n += 1;
    }
    assert_eq!(n, 8 * 7);
}

/// Section 2.6 is computed (a local X9.24-3 script), not published: a cross-check of
/// the usages the supplement has no vector for.
#[test]
fn aes128_all_usages_computed_cross_check() {
    let bdk = Key::aes(&hex(AES128_BDK)).expect("bdk");
    let ksn = "123456789012345600000001";
    let r = rows(AES_ALL_USAGES);
    let mut n = 0;
    for row in r {
        let usage = match row[0] {
            "1000" => KeyUsage::PinEncryption,
            "2000" => KeyUsage::MacGeneration,
            "2001" => KeyUsage::MacVerification,
            "2002" => KeyUsage::MacBoth,
            "3000" => KeyUsage::DataEncryption,
            "3001" => KeyUsage::DataDecryption,
            "3002" => KeyUsage::DataBoth,
            "0002" => KeyUsage::KeyEncryption,
            _ => continue,
        };
        assert_eq!(usage.code(), u16::from_str_radix(row[0], 16).expect("code"));
        let v: Vec<&str> = row.iter().rev().take(3).rev().copied().collect();
        assert_eq!(
            wk(&bdk, ksn, usage, WorkingKeyType::Aes128),
            v[0],
            "{}",
            row[0]
        );
        assert_eq!(
            wk(&bdk, ksn, usage, WorkingKeyType::Tdes2),
            v[1],
            "{}",
            row[0]
        );
        assert_eq!(
            wk(&bdk, ksn, usage, WorkingKeyType::Tdes3),
            v[2],
            "{}",
            row[0]
        );
        n += 1;
    }
    assert_eq!(n, 8);
}

#[test]
fn aes_device_sequences_and_exhaustion() {
    for bdk_hex in [AES128_BDK, AES256_BDK] {
        let bdk = Key::aes(&hex(bdk_hex)).expect("bdk");
        let ik = aes_dukpt::derive_initial_key(&bdk, &IKID).expect("ik");
        let mut dev = AesDevice::load_initial_key(&ik, IKID).expect("load");
        for c in 1..=40u32 {
            let t = dev.next_transaction().expect("transaction");
            assert_eq!(t.ksn().counter(), c);
            let host = aes_dukpt::derive_derivation_key(&ik, t.ksn()).expect("dk");
            assert_eq!(key_hex(&t.derivation_key().expect("dk")), key_hex(&host));
            assert_eq!(
                key_hex(
                    &t.working_key(KeyUsage::PinEncryption, WorkingKeyType::Aes128)
                        .expect("k")
                ),
                key_hex(
                    &aes_dukpt::working_key_from(
                        &host,
                        t.ksn(),
                        KeyUsage::PinEncryption,
                        WorkingKeyType::Aes128
                    )
                    .expect("k")
                )
            );
        }
        // 0001FFFE has sixteen 1 bits: the next counter is 00020000 (0001FFFF skipped).
        let mut dev = AesDevice::resume(&ik, &aksn("12345678901234560001FFFE")).expect("resume");
        let got: Vec<u32> = (0..3)
            .map(|_| dev.next_transaction().expect("t").ksn().counter())
            .collect();
        assert_eq!(got, [0x1FFFE, 0x20000, 0x20001]);
        // The last four counters a device uses, then exhaustion.
        let mut dev = AesDevice::resume(&ik, &aksn("1234567890123456FFFE2000")).expect("resume");
        let mut got = Vec::new();
        while let Ok(t) = dev.next_transaction() {
            let host = aes_dukpt::derive_derivation_key(&ik, t.ksn()).expect("dk");
            assert_eq!(key_hex(&t.derivation_key().expect("dk")), key_hex(&host));
            got.push(t.ksn().counter());
        }
        assert_eq!(got, [0xFFFE2000, 0xFFFE4000, 0xFFFE8000, 0xFFFF0000]);
        assert!(matches!(
            dev.next_transaction(),
            Err(SessionError::Dukpt(DukptError::Exhausted))
        ));
    }
}

#[test]
fn aes_bad_inputs_are_typed() {
    let b128 = Key::aes(&hex(AES128_BDK)).expect("bdk");
    let k = aksn("123456789012345600000001");
    assert!(matches!(
        aes_dukpt::derive_working_key(&b128, &k, KeyUsage::PinEncryption, WorkingKeyType::Aes256),
        Err(SessionError::Dukpt(DukptError::WorkingKeyTooStrong { .. }))
    ));
    assert!(matches!(
        AesKsn::from_bytes(&[0u8; 10]),
        Err(SessionError::Dukpt(DukptError::KsnLength {
            expected: 12,
            found: 10
        }))
    ));
    let tdes_key = Key::tdes(&[1u8; 16]).expect("tdes");
    assert!(matches!(
        aes_dukpt::derive_initial_key(&tdes_key, &IKID),
        Err(SessionError::Dukpt(DukptError::BaseKeyKind { .. }))
    ));
    let ik = aes_dukpt::derive_initial_key(&b128, &IKID).expect("ik");
    assert!(matches!(
        AesDevice::resume(&ik, &aksn("12345678901234560001FFFF")),
        Err(SessionError::Dukpt(DukptError::CounterNotUsable {
            ones: 17,
            ..
        }))
    ));
    // Keys and KSNs print safely.
    let t = AesDevice::load_initial_key(&ik, IKID)
        .expect("load")
        .next_transaction()
        .expect("t");
    let shown = format!("{t:?}");
    assert!(
        shown.contains("123456789012345600000001") && shown.contains("****"),
        "{shown}"
    );
}
